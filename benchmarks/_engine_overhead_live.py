"""Mode ``ours_live`` of :mod:`benchmarks.engine_overhead`: notebook 07_live's view, in process.

The view refreshes on its own thread as in a kernel; a kernel would JSON-encode its widgets'
state messages and send them to the browser, so :class:`JsonComm` encodes them the same way (and
counts the bytes) before dropping them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LIVE_EVERY_S = 1.0  # as notebook 07_live refreshes
LIVE_WINDOW_S = 120.0


class JsonComm:
    """Stands for a kernel's comm: a widget's messages JSON-encoded as ``jupyter_client``'s
    session encodes them, then dropped (the bytes are counted)."""

    sent_bytes = 0
    messages = 0

    @classmethod
    def install(cls) -> None:
        import comm
        from comm.base_comm import BaseComm

        class Comm(BaseComm):
            def publish_msg(
                self,
                msg_type: str,
                data: Any = None,
                metadata: Any = None,
                buffers: Any = None,
                **keys: Any,
            ) -> None:
                from jupyter_client.session import json_packer

                cls.sent_bytes += len(json_packer({"data": data, "metadata": metadata}))
                cls.messages += 1

        comm.create_comm = Comm


def open_paused(run_dir: Path) -> Any:
    """The live view of notebook 07_live over the benchmark's run folder, paused."""
    JsonComm.install()
    from sagellm_obs.explore import live

    view = live(run_dir, every=LIVE_EVERY_S, window_s=LIVE_WINDOW_S)
    view.pause()
    return view


def figures(view: Any) -> dict[str, Any]:
    """What the view did over the benchmark, for the result file."""
    return {
        "refreshes": view.refreshes,
        "widget_messages": JsonComm.messages,
        "widget_bytes": JsonComm.sent_bytes,
        "window_s": LIVE_WINDOW_S,
        "every_s": LIVE_EVERY_S,
    }
