"""Run the visual memory game of Khosla et al. 2015 (sec. 2.2-2.3) on your own images.

`design.py` draws the level sequences of a study folder, `study.py` reads that folder back,
`db.py` stores every trial in SQLite (WAL), `server.py` is the FastAPI app participants play in,
`export.py` turns the database into the response table `artmem memgame scores` reads.
"""
