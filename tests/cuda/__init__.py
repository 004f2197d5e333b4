"""Tests that need a GPU: each module skips itself where torch sees no CUDA device (set
``ZOO_TEST_DEVICE=cpu`` to run the same tests on the CPU, as a dry run of their logic)."""
