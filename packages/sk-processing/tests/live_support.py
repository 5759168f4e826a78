"""Skprocess subclasses for test_skprocess_live (importable in spawn/forkserver children)."""

from __future__ import annotations

from typing import Any

from suitkaise.processing import Skprocess


class UsesMpObjects(Skprocess):
    """Uses every multiprocessing object it was given; the parent checks the effects."""

    def __init__(self, objs: dict[str, Any]) -> None:
        self.objs = objs
        self.again = objs["queue"]  # a second reference: the child must see one object
        self.process_config.runs = 1

    def __run__(self) -> None:
        o = self.objs
        assert self.again is o["queue"]
        o["queue"].put("queue")
        o["simple"].put("simple")
        o["joinable"].put("joinable")
        o["event"].set()
        with o["lock"]:
            o["value"].value += 41
        with o["rlock"], o["condition"]:
            o["array"][1] = 7
            o["condition"].notify_all()
        o["raw"].value = 3
        o["semaphore"].release()
        o["barrier"].wait(timeout=60)

    def __result__(self) -> str:
        return "used"


class SendsOnSocket(Skprocess):
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.process_config.runs = 1

    def __run__(self) -> None:
        self.sock.sendall(b"hello")


class SendsOnConnection(Skprocess):
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.process_config.runs = 1

    def __run__(self) -> None:
        self.conn.send({"from": "child"})


class WritesLines(Skprocess):
    def __init__(self, f: Any, runs: int = 3) -> None:
        self.f = f
        self.process_config.runs = runs

    def __run__(self) -> None:
        line = f"child {self._current_run}\n"
        self.f.write(line.encode() if "b" in self.f.mode else line)
        self.f.flush()


class ReadsLine(Skprocess):
    def __init__(self, f: Any) -> None:
        self.f = f
        self.process_config.runs = 1

    def __run__(self) -> None:
        self.line = self.f.readline()

    def __result__(self) -> str:
        return str(self.line)
