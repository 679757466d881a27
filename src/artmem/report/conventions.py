"""Drawing conventions shared by the report, `artmem.plots` and the explorer (no matplotlib
import here, so the web pages can quote them cheaply)."""

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7"}

# what every box plot of the package draws (report and explorer), said once for the captions
BOX_CAPTION = ("Box: middle 50 % of the images (quartiles); line in the box: median; whiskers: the "
               "furthest image within 1.5 box lengths; red-orange dot: mean; grey dots: single images.")
