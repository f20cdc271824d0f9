"""longvid.training"""
