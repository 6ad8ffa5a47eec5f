"""The market domain: pure, I/O-free numpy functions shared by both backends and the loader.

Same data in, same answers out: the mock, the production backend and the loader all call these
functions, so a value differs between backends only when the stored history differs.
"""
