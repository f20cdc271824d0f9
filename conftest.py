"""Root conftest: shared fixtures live in tests/fixtures/, one module per kind of real service."""

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.build",
    "tests.fixtures.media",
    "tests.fixtures.corpus",
    "tests.fixtures.loader_corpus",
    "tests.fixtures.http",
    "tests.fixtures.hico",
    "tests.fixtures.built",
    "tests.fixtures.annotate",
]
