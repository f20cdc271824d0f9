"""longvid.annotate"""
