"""Running rounds of work at the same moment, each in its own thread (and with its own
warehouse connection): how the tests show that overlapping runs on PostgreSQL stay correct."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def at_once(*rounds: Callable[[], T]) -> list[T]:
    """Run the rounds in threads released together; their results in order."""
    start = threading.Barrier(len(rounds))
    results: dict[int, T] = {}
    failures: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = rounds[index]()
        except BaseException as error:  # re-raised in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(rounds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if failures:
        raise failures[0]
    return [results[index] for index in range(len(rounds))]
