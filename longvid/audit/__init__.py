"""longvid.audit: the parts of ``longvid audit`` (the Ray job itself is
:mod:`longvid.pipelines.audit`).

- :mod:`~longvid.audit.corpus`: the tables of a built corpus, read once.
- :mod:`~longvid.audit.shardcheck`: one shard verified and its samples read (a Ray task's work).
- :mod:`~longvid.audit.accounting`: inputs → accepted + rejected, rejects, declared vs probed.
- :mod:`~longvid.audit.duplicates`: exact and near-duplicate clusters.
- :mod:`~longvid.audit.leakage` / :mod:`~longvid.audit.eval_embed`: evaluation videos in the corpus.
- :mod:`~longvid.audit.compare`: what changed between two builds.
- :mod:`~longvid.audit.report`, :mod:`~longvid.audit.html`, :mod:`~longvid.audit.svg`: the report.
- :mod:`~longvid.audit.checks`: the checks and their verdicts.
"""
