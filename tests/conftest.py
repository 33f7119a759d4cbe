pytest_plugins = [
    "tests.fixtures.minio",
    "tests.fixtures.postgres",
    "tests.fixtures.tools",
    "tests.fixtures.upstreams",
]
