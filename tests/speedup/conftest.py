from tests.graph.conftest import one_thread  # noqa: F401  (autouse: one thread per test)
