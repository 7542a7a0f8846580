"""``transferlm push RUN --repo ID``: upload a finished run (or export) directory to the Hugging Face Hub, with its
model card. Only what makes the model goes: not checkpoints, training logs, tracker folders or caches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from transferlm.errors import PushError
from transferlm.runs import layout

# What stays behind: resumable checkpoints, the trackers' local folders and the training log (the card and
# metrics.json carry the results), and anything hidden (a staging folder, an editor's files).
SKIPPED_DIRS = frozenset({"checkpoints", "tensorboard", "wandb", "mlruns", "__pycache__"})
SKIPPED_FILES = frozenset({"log.jsonl", "tracking.json"})


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    url: str
    files: list[str]


def push_files(root: Path) -> list[str]:
    """The files ``push`` uploads, relative to the run directory; a run that is not finished is refused."""
    root = Path(root)
    layout.read_manifest(root)  # raises for a missing or unfinished run
    chosen = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if set(relative.parts[:-1]) & SKIPPED_DIRS or relative.name in SKIPPED_FILES:
            continue
        chosen.append(relative.as_posix())
    if layout.MODEL_CARD not in chosen:
        raise PushError(f"{root}: no model card ({layout.MODEL_CARD}); it was trained by an older transferlm. "
                        "Write one with `transferlm card RUN`, then push")
    return chosen


def push(root: Path, repo_id: str, private: bool = False, token: str | None = None,
         message: str | None = None) -> PushResult:
    """Create ``repo_id`` on the Hub if needed (private when asked) and upload ``push_files(root)`` in one commit."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    root = Path(root)
    files = push_files(root)
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise PushError("HF_HUB_OFFLINE is set: the Hub cannot be reached in offline mode; unset it to push")
    api = HfApi(token=token)
    try:
        api.whoami()
    except LocalTokenNotFoundError as e:
        raise PushError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN, then push again") from e
    except HfHubHTTPError as e:
        raise PushError(f"the Hub refused the token ({e}); check HF_TOKEN or log in again with `hf auth login`") \
            from e
    except Exception as e:  # noqa: BLE001 - the HTTP client's own network errors; nothing was uploaded
        raise PushError(f"cannot reach the Hugging Face Hub ({type(e).__name__}: {e}); check the network or proxy "
                        "settings, then push again") from e
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(root), repo_id=repo_id, repo_type="model", allow_patterns=files,
                      commit_message=message or f"Upload {root.name} (transferlm)")
    return PushResult(repo_id, str(repo), files)
