"""longvid.pipelines"""
