"""--enhance-prompt: an instruct LLM rewrites the prompt before the video model sees it.

The LLM here is vidgen's tiny one (`tiny:llm`: a random two-layer Qwen2 with a ChatML template,
built locally like the tiny video models), often copied into a folder of the test's own and
named as --enhancer DIR. It writes word salad, which is all these tests need: what it wrote must
reach the pipeline, be recorded with everything that decided it, and come back in a replay.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_reproduces, cli, one_line_error, png_frames, printed_sidecar, sidecar

# Most tests here run a tiny pipeline or LLM: their tier unless marked otherwise.
DEFAULT_TIER = "pipeline"

FOX = "a red fox running through fresh snow"
WAN = ["--preset", "tiny-wan", "--seed", "5"]
# The tiny LLM writes a few words: enough to change the prompt, quick to write.
SHORT = ["--set", "inputs.enhancer_max_new_tokens=16"]
ENHANCE = ["--enhance-prompt", *SHORT]


def _llm_folder(tmp_path: Path) -> Path:
    """The tiny instruct LLM in a folder of this test's own, for --enhancer DIR."""
    from vidgen.models import tiny

    target = tmp_path / "llm"
    shutil.copytree(tiny.ensure("llm"), target)
    return target


def _rewrite(block: dict) -> str:
    """What plain transformers writes from a sidecar's prompt_enhancement block alone: the LLM at
    its recorded path, its chat template over the recorded system prompt and typed prompt, the
    recorded seed and generation settings."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = block["enhancer"]["path"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    messages = [
        {"role": "system", "content": block["system_prompt"]["text"]},
        {"role": "user", "content": block["prompt"]},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(block["seed"])
    output = model.generate(**inputs, **block["generation"], pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def _dry_rewrite(*args: str) -> dict:
    result = cli("t2v", FOX, *WAN, *ENHANCE, "--enhancer", "tiny:llm", "--dry-run", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_the_pipeline_gets_the_enhanced_prompt_and_every_view_shows_both(tmp_path: Path) -> None:
    from vidgen.models.components import file_sha256

    llm = _llm_folder(tmp_path)
    result = cli("t2v", FOX, *WAN, *ENHANCE, "--enhancer", str(llm), "--format", "png", "--out", "run/")
    assert result.exit_code == 0, result.stderr
    data = printed_sidecar(result)
    block = data["prompt_enhancement"]
    # The config keeps what was typed; the pipeline got what the LLM wrote.
    assert data["config"]["inputs"]["prompt"] == block["prompt"] == FOX
    assert block["enhanced_prompt"] not in ("", FOX)
    assert data["pipeline"]["call_kwargs"]["prompt"] == block["enhanced_prompt"]
    # The LLM, found again by its folder and the hash of its weights, its instructions and settings.
    assert block["enhancer"]["id"] == str(llm)
    assert block["enhancer"]["source"] == "dir"
    assert block["enhancer"]["sha256"] == file_sha256(llm)
    assert block["system_prompt"]["name"] == "wan-t2v-en"
    assert block["system_prompt"]["text"].startswith("You are a prompt engineer, aiming to rewrite user inputs")
    assert block["seed"] == 5  # the run's seed, as no --enhancer-seed was given
    assert block["generation"] == {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
        "max_new_tokens": 16,
    }
    assert isinstance(data["timings"]["enhance"], float)
    # The record is enough to write the same rewrite with plain transformers...
    assert _rewrite(block) == block["enhanced_prompt"]
    # ... and plain diffusers on that prompt makes the same frames (another prompt does not).
    assert_reproduces(png_frames(result), data)

    output = Path(result.stdout.strip())
    shown = cli("inspect", str(output.with_name(output.name + ".json")))
    assert shown.exit_code == 0, shown.stderr
    rows = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert rows["prompt"] == FOX
    assert rows["enhanced"] == block["enhanced_prompt"]
    assert rows["enhancer"].startswith(f"{llm} (from {llm}, sha256 {block['enhancer']['sha256'][:12]}")
    assert "system prompt wan-t2v-en; seed 5;" in rows["enhancer"]
    listed = cli("ls", "run", "--json")
    (row,) = json.loads(listed.stdout)["outputs"]
    assert (row["prompt"], row["enhanced_prompt"]) == (FOX, block["enhanced_prompt"])
    assert f"{FOX} -> " in cli("ls", "run").stdout
    assert cli("gallery", "run").exit_code == 0
    page = (tmp_path / "run" / "index.html").read_text(encoding="utf-8")
    import html

    assert f'<p class="prompt">{html.escape(FOX)}</p>' in page
    assert f'<p class="enhanced">enhanced: {html.escape(block["enhanced_prompt"])}</p>' in page


def test_a_replay_reuses_the_recorded_rewrite_without_loading_the_llm(tmp_path: Path) -> None:
    llm = _llm_folder(tmp_path)
    args = ["t2v", "a fox", *WAN, *ENHANCE, "--enhancer", str(llm), "--format", "png", "--num-videos", "2"]
    result = cli(*args, "--out", "run/", "--json")
    assert result.exit_code == 0, result.stderr
    # The second video (seed 6): its rewrite came from the run's first seed, which the replay
    # of this one video no longer has as its seed.
    second = json.loads(result.stdout)["outputs"][1]
    recorded = sidecar(Path(second["sidecar"]))["prompt_enhancement"]
    assert (recorded["seed"], second["seed"]) == (5, 6)
    shutil.rmtree(llm)  # the LLM is gone: the replay must not need it

    replayed = cli("replay", second["sidecar"])
    assert replayed.exit_code == 0, replayed.stderr
    assert "the recorded enhanced prompt is reused; the prompt enhancer is not loaded" in replayed.stderr
    again = Path(replayed.stdout.strip())
    assert np.array_equal(png_frames(replayed), _frames(Path(second["path"])))
    block = sidecar(again.with_name(again.name + ".json"))["prompt_enhancement"]
    assert block["enhanced_prompt"] == recorded["enhanced_prompt"]
    assert block["reused_from"] == second["sidecar"]

    # Another prompt asks the LLM again, and it is gone: one line, before the video model loads.
    changed = cli("replay", second["sidecar"], "--set", "inputs.prompt=a dog")
    one_line_error(changed, 5, f"--enhancer {llm} is neither an existing folder")
    assert "loading tiny:wan" not in changed.stderr
    # A recorded rewrite is a file's text: bounded like any prompt before a tokenizer sees it.
    data = sidecar(Path(second["sidecar"]))
    data["prompt_enhancement"]["enhanced_prompt"] = "x" * 100_001
    (tmp_path / "edited.json").write_text(json.dumps(data), encoding="utf-8")
    one_line_error(cli("replay", str(tmp_path / "edited.json")), 4, "its enhanced prompt is 100,001 characters")


def test_a_decode_of_saved_latents_keeps_the_rewrite_in_its_sidecar(tmp_path: Path) -> None:
    result = cli("t2v", FOX, *WAN, *ENHANCE, "--enhancer", "tiny:llm", "--save-latents", "--out", "run.mp4")
    assert result.exit_code == 0, result.stderr
    recorded = sidecar(tmp_path / "run.json")["prompt_enhancement"]
    decoded = cli("decode", "run.latents.safetensors", "--out", "decoded.mp4")
    assert decoded.exit_code == 0, decoded.stderr
    assert sidecar(tmp_path / "decoded.json")["prompt_enhancement"] == recorded


@pytest.mark.unit
def test_an_empty_rewrite_falls_back_to_the_typed_prompt_and_says_so() -> None:
    import time

    from vidgen.run import enhance

    asked = {"prompt": FOX, "enhancer": "tiny:llm", "system_prompt": "wan-t2v-en", "seed": 1}
    made = enhance._enhanced(asked, "", {"generation": {}}, time.perf_counter())
    assert made.prompt == FOX
    assert made.record["fallback"] == "the enhancer wrote nothing; the typed prompt was used"


def _frames(folder: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))])


def test_the_llm_seed_decides_the_rewrite_and_greedy_ignores_it() -> None:
    first, second = _dry_rewrite("--enhancer-seed", "1"), _dry_rewrite("--enhancer-seed", "2")
    assert first["enhanced_prompt"] != second["enhanced_prompt"]
    assert _dry_rewrite("--enhancer-seed", "1")["enhanced_prompt"] == first["enhanced_prompt"]
    assert first["prompt_enhancement"]["seed"] == 1
    greedy = ["--set", "inputs.enhancer_temperature=0"]
    one, two = _dry_rewrite("--enhancer-seed", "1", *greedy), _dry_rewrite("--enhancer-seed", "2", *greedy)
    assert one["enhanced_prompt"] == two["enhanced_prompt"]
    assert one["prompt_enhancement"]["generation"] == {
        "do_sample": False,
        "repetition_penalty": 1.05,
        "max_new_tokens": 16,
    }


def test_a_dry_run_prints_the_enhanced_prompt_alone_and_loads_only_the_llm(tmp_path: Path) -> None:
    from vidgen.core.terminal import escape

    result = cli("t2v", FOX, *WAN, *ENHANCE, "--enhancer", "tiny:llm", "--dry-run")
    assert result.exit_code == 0, result.stderr
    data = _dry_rewrite()
    assert result.stdout == escape(data["enhanced_prompt"]) + "\n"
    assert "loading prompt enhancer tiny:llm on cpu" in result.stderr
    assert "loading tiny:wan" not in result.stderr
    assert not (tmp_path / "outputs").exists()
    assert data["dry_run"] is True and data["exit_code"] == 0
    assert data["prompt"] == FOX and data["prompt_enhancement"]["enhancer"]["id"] == "tiny:llm"


def test_a_batch_loads_the_llm_once_for_the_jobs_of_a_group(tmp_path: Path) -> None:
    jobs = [
        {"id": "fox", "prompt": FOX, "enhance_prompt": True, "enhancer": "tiny:llm"},
        {"id": "corgi", "prompt": "a corgi surfing at dusk", "enhance_prompt": True, "enhancer": "tiny:llm"},
        {"id": "plain", "prompt": "a horse galloping"},
    ]
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("".join(json.dumps(job) + "\n" for job in jobs), encoding="utf-8")
    result = cli("batch", str(manifest), "--preset", "tiny-wan", *SHORT, "--out", "out/", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line.startswith("{")]
    # One LLM load for both rewrites, then one pipeline load for the three videos.
    assert events.count("enhance") == 1
    assert events.count("load") == 1
    fox, corgi, plain = (sidecar(tmp_path / "out" / f"{name}.json") for name in ("fox", "corgi", "plain"))
    assert fox["prompt_enhancement"]["enhanced_prompt"] != corgi["prompt_enhancement"]["enhanced_prompt"]
    for data in (fox, corgi):
        assert data["pipeline"]["call_kwargs"]["prompt"] == data["prompt_enhancement"]["enhanced_prompt"]
        assert data["prompt_enhancement"]["seed"] == data["seed"]
    assert "prompt_enhancement" not in plain and plain["pipeline"]["call_kwargs"]["prompt"] == "a horse galloping"


def test_pickle_weights_need_allow_pickle_typed_on_the_command_line(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from vidgen.models import tiny

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny.ensure("llm"), pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    args = ["t2v", FOX, *WAN, *ENHANCE, "--enhancer", str(pickled), "--dry-run"]
    one_line_error(cli(*args), 5, "has no safetensors weights and pickle files are refused")
    assert cli(*args, "--allow-pickle").exit_code == 0
    # A manifest may name the enhancer, but not allow its pickles: the job is invalid (exit 3).
    manifest = tmp_path / "jobs.jsonl"
    job = {"prompt": FOX, "enhance_prompt": True, "enhancer": str(pickled), "allow_pickle": True}
    manifest.write_text(json.dumps(job) + "\n", encoding="utf-8")
    batch = cli("batch", str(manifest), "--preset", "tiny-wan", "--out", "out/")
    assert batch.exit_code == 3
    assert "asks for pickle weights (model.allow_pickle: true)" in batch.stderr


@pytest.mark.unit
def test_an_enhancer_that_is_not_an_instruct_llm_is_refused_before_anything_loads(tmp_path: Path) -> None:
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text('{"model_type": "vit", "architectures": ["ViTModel"]}')
    (tmp_path / "vl").mkdir()
    (tmp_path / "vl" / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text('{"model_type": "qwen2"}')
    (tmp_path / "base" / "tokenizer_config.json").write_text("{}")
    cases = {
        "pipe": "is a diffusers pipeline folder, not a text-generation LLM",
        "vit": "is a vit model (ViTModel) that does not generate text",
        "base": "has no chat template, so it is not an instruct (chat) model",
        "vl": "is a vision-language model (qwen2_5_vl), and vidgen's enhancer runs text-only LLMs",
    }
    for name, message in cases.items():
        result = cli("t2v", FOX, *WAN, "--enhance-prompt", "--enhancer", str(tmp_path / name))
        one_line_error(result, 5, message)
        assert "loading" not in result.stderr
    one_line_error(cli("t2v", FOX, *WAN, "--enhance-prompt", "--enhancer", "file.safetensors"), 5, "single file")
    one_line_error(cli("t2v", FOX, *WAN, "--enhance-prompt", "--enhancer", "Qwen/Not-Cached"), 5, "not in the Hugging")


@pytest.mark.unit
def test_enhancement_settings_that_cannot_work_are_config_errors() -> None:
    one_line_error(cli("t2v", FOX, *WAN, "--enhancer", "tiny:llm"), 3, "add --enhance-prompt")
    one_line_error(
        cli("i2v", "x.png", "--preset", "tiny-svd", "--enhance-prompt"), 3, "--enhance-prompt is not used by"
    )
    prompts = ["--prompt-at", "4:a rose", "--enhance-prompt"]
    one_line_error(cli("animate", "a bud", "--preset", "tiny-animatediff", *prompts), 3, "rewrites one prompt")
    one_line_error(cli("t2v", FOX, *WAN, "--set", "inputs.enhancer_max_new_tokens=0"), 3, "enhancer_max_new_tokens")
    # `pipeline` is LTX-2's own enhancer (what it uses without --enhancer), which Wan has not.
    one_line_error(cli("t2v", FOX, *WAN, "--enhance-prompt", "--enhancer", "pipeline"), 3, "Wan 2.1's has none")


@pytest.mark.unit
def test_system_prompts_follow_the_family_the_language_and_the_inputs() -> None:
    from vidgen.families import system_prompts

    assert system_prompts.choose("wan", False, FOX).name == "wan-t2v-en"
    assert system_prompts.choose("wan", False, "一只狐狸在雪地里奔跑").name == "wan-t2v-zh"
    assert system_prompts.choose("wan", True, FOX).name == "generic-conditioned"
    assert system_prompts.choose("generic", False, FOX).name == "generic-t2v"
    assert "LM_ZH_SYS_PROMPT" in system_prompts.named("wan-t2v-zh").record()["source"]
    assert system_prompts.named("wan-t2v-zh").text.startswith("你是一位Prompt优化师")


@pytest.mark.unit
def test_the_memory_planner_counts_the_llm_alone_in_the_encode_phase() -> None:
    from vidgen import families
    from vidgen.config import resolve, set_layer
    from vidgen.run import memory

    counted = memory.Sizes({}, "published sizes")
    memory.count_enhancer(counted, "Qwen/Qwen2.5-7B-Instruct", "cuda")
    assert counted.fixed == {"enhancer": 7.62e9 * 2}  # bf16 on a GPU
    cfg = resolve("t2v", ["wan2.1-t2v-1.3b"], [], families.defaults_layer).config
    family = families.get("wan")
    params = {"transformer": 1.4e9, "text_encoder": 5.7e9, "vae": 0.13e9}
    without = memory.estimate(family, cfg, params, "bf16")
    both = memory.estimate(family, cfg, params, "bf16", fixed=counted.fixed)
    llm = 7.62e9 * 2 + memory.ENHANCE_WORKING
    # Freed before the video model loads: the peak is the larger of the two, never their sum.
    assert both.peak == max(without.peak, llm)
    assert both.phases["encode"] == llm and both.weights["enhancer"] == 7.62e9 * 2
    assert {k: v for k, v in both.weights.items() if k != "enhancer"} == without.weights
    # --memory auto picks the video's plan by the video's own peak, and says the LLM is too large.
    from vidgen.models.loader import locate_all

    auto = resolve("t2v", ["wan2.1-t2v-1.3b"], [set_layer(["optimization.memory=auto", "optimization.vram_gb=8"])],
                   families.defaults_layer).config  # fmt: skip
    found = locate_all(auto, family, build=False)
    alone = memory.plan(family, auto, "bf16", found, "cpu")
    planned = memory.plan(family, auto, "bf16", found, "cpu", enhancer="Qwen/Qwen2.5-7B-Instruct")
    assert planned.rung == alone.rung
    assert planned.estimate.peak == max(alone.estimate.peak, llm)
    assert "the prompt enhancer alone needs 14.7 GiB of 8.0; pick a smaller --enhancer" in planned.notes


def test_ltx2_enhances_with_its_own_gemma_through_diffusers(tmp_path: Path) -> None:
    # The tiny-ltx2 preset's model has no `processor`, which diffusers' enhance_prompt reads the
    # prompt with: refused in one line, naming the way out.
    one_line_error(cli("t2v", FOX, "--preset", "tiny-ltx2", "--enhance-prompt"), 5, "has no `processor` component")
    model = _tiny_ltx2_with_processor(tmp_path / "ltx2")
    args = ["t2v", FOX, "--preset", "tiny-ltx2", "--model", str(model), "--seed", "3", *ENHANCE]
    result = cli(*args, "--format", "png", "--out", "run/")
    assert result.exit_code == 0, result.stderr
    data = printed_sidecar(result)
    block = data["prompt_enhancement"]
    assert block["enhancer"]["method"] == "LTX2Pipeline.enhance_prompt"
    assert block["enhancer"]["component"] == "text_encoder"
    assert block["system_prompt"]["name"] == "ltx2-t2v"
    assert block["generation"] == {"max_new_tokens": 16, "do_sample": True, "temperature": 0.7}
    assert data["pipeline"]["call_kwargs"]["prompt"] == block["enhanced_prompt"] != FOX
    # Plain diffusers' method writes the same from the record...
    from diffusers import LTX2Pipeline

    pipe = LTX2Pipeline.from_pretrained(str(model))
    generation = {k: v for k, v in block["generation"].items() if k != "max_new_tokens"}
    theirs = pipe.enhance_prompt(
        FOX, block["system_prompt"]["text"], max_new_tokens=16, seed=block["seed"], generation_kwargs=generation
    )
    assert theirs == [block["enhanced_prompt"]]
    # ... a dry run loads only the text parts and prints it ...
    dry = cli(*args, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "loading the text encoder of" in dry.stderr
    assert dry.stdout.strip() == block["enhanced_prompt"]
    # ... and the video is plain diffusers' on that prompt.
    assert_reproduces(png_frames(result), data)
    # From an image, the Gemma looks at it, with Lightricks' image-to-video system prompt.
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save(tmp_path / "first.png")
    i2v = cli("i2v", str(tmp_path / "first.png"), *args[1:], "--dry-run", "--json")
    assert i2v.exit_code == 0, i2v.stderr
    looked = json.loads(i2v.stdout)["prompt_enhancement"]
    assert looked["system_prompt"]["name"] == "ltx2-i2v"
    assert looked["enhancer"]["looked_at_image"] is True
    assert looked["enhancer"]["method"] == "LTX2ImageToVideoPipeline.enhance_prompt"


def _tiny_ltx2_with_processor(folder: Path) -> Path:
    """The tiny LTX-2 with the Gemma3Processor diffusers' enhance_prompt needs: a tokenizer with
    Gemma 3's image and turn tokens and a chat template, and a text encoder (vision tower
    included) for its vocabulary and image tokens."""
    import torch
    from diffusers import LTX2Pipeline
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        Gemma3TextConfig,
        GemmaTokenizer,
        SiglipVisionConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from vidgen.families.ltx2 import tiny_components

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "\u2581": 5}
    for char in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault("\u2581" + char, len(vocab))
    for token in ("<start_of_image>", "<end_of_image>", "<image_soft_token>", "<start_of_turn>", "<end_of_turn>"):
        vocab[token] = len(vocab)
    special = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[], extra_special_tokens=special)
    tokenizer.chat_template = (
        "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] }}"
        "{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    processor = Gemma3Processor(
        Gemma3ImageProcessorPil(size={"height": 16, "width": 16}), tokenizer, image_seq_length=4
    )
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,  # the connectors' width, as in the tiny LTX-2
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        sliding_window=16,
        max_position_embeddings=8192,
    )
    vision = SiglipVisionConfig(
        hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=4
    )
    ids = {"image_token_index": tokenizer.image_token_id, "boi_token_index": tokenizer.boi_token_id}
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, **ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        parts = {
            **tiny_components(),
            "tokenizer": tokenizer,
            "text_encoder": Gemma3ForConditionalGeneration(config).eval(),
        }
        LTX2Pipeline(**parts, processor=processor).save_pretrained(folder)
    return folder


@pytest.mark.gpu
def test_on_cuda_the_llm_runs_in_bf16_and_its_weights_are_freed_before_the_video_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from vidgen.models import enhancer

    freed: list[tuple[int, int]] = []
    release = enhancer.release

    def watched(llm: enhancer.LLM) -> None:
        weights = sum(p.numel() * p.element_size() for p in llm.model.parameters())
        before = torch.cuda.memory_allocated()
        release(llm)
        freed.append((before - torch.cuda.memory_allocated(), weights))

    monkeypatch.setattr(enhancer, "release", watched)
    args = ["t2v", FOX, *WAN, *ENHANCE, "--enhancer", "tiny:llm", "--device", "cuda", "--format", "png"]
    result = cli(*args, "--out", "a/")
    assert result.exit_code == 0, result.stderr
    ((released, weights),) = freed
    assert released >= weights > 0
    block = printed_sidecar(result)["prompt_enhancement"]
    assert (block["enhancer"]["dtype"], block["enhancer"]["device"]) == ("bf16", "cuda")
    again = cli(*args, "--out", "b/")
    assert printed_sidecar(again)["prompt_enhancement"]["enhanced_prompt"] == block["enhanced_prompt"]
