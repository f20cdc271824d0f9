"""longvid.shards"""
