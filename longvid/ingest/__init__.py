"""longvid.ingest"""
