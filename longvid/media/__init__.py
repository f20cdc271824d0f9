"""longvid.media"""
