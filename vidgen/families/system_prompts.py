"""The system prompts --enhance-prompt gives the LLM: the ones a model's authors publish, where
they do, and vidgen's own otherwise.

- `wan`: Wan's own prompt extender (Wan-Video/Wan2.1, wan/utils/prompt_extend.py, Apache-2.0),
  LM_EN_SYS_PROMPT and LM_ZH_SYS_PROMPT, the prompts its local Qwen2.5-Instruct extender runs
  for text-to-video; the Chinese one for prompts written in Chinese (as Wan's
  `--prompt_extend_target_lang zh`). The texts in prompts/ are those strings byte for byte.
- `ltx2`: Lightricks' LTX-2 text-to-video prompt, as diffusers ships it
  (diffusers.pipelines.ltx2.utils.T2V_DEFAULT_SYSTEM_PROMPT), for an LLM picked with --enhancer;
  LTX-2's own enhancer (the pipeline's Gemma) chooses its prompts in families/ltx2.py.
- `generic`: vidgen's own, for every other family.

Runs that start from a picture or a video (an i2v image, a v2v or control video, keyframes,
reference images) get vidgen's `generic-conditioned` prompt whatever the family: the authors'
image prompts (Wan's VL_*, LTX-2's I2V) describe an image the model reading them sees, and
vidgen's --enhancer LLMs read text only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

_FOLDER = Path(__file__).parent / "prompts"
_WAN = "Wan-Video/Wan2.1 wan/utils/prompt_extend.py at 76e9427657c74f7d063f6c50fce9529900c59e28 (Apache-2.0)"
# Where each text comes from: the file in prompts/ (or the library that ships it), and its origin.
SOURCES = {
    "wan-t2v-en": f"{_WAN}: LM_EN_SYS_PROMPT",
    "wan-t2v-zh": f"{_WAN}: LM_ZH_SYS_PROMPT",
    "ltx2-t2v": "diffusers.pipelines.ltx2.utils.T2V_DEFAULT_SYSTEM_PROMPT (Lightricks' LTX-2 gemma_t2v_system_prompt)",
    "generic-t2v": "vidgen",
    "generic-conditioned": "vidgen",
}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class SystemPrompt:
    name: str
    text: str

    def record(self) -> dict[str, Any]:
        """What the sidecar keeps: the name, where the text comes from, and the text itself."""
        return {"name": self.name, "source": SOURCES[self.name], "text": self.text}


def choose(style: str, conditioned: bool, prompt: str) -> SystemPrompt:
    """The system prompt for a family's `Enhancing.prompts` style, for a run that starts from
    input pictures or videos (`conditioned`) or from the prompt alone."""
    if conditioned:
        return named("generic-conditioned")
    if style == "wan":
        return named("wan-t2v-zh" if _CJK.search(prompt) else "wan-t2v-en")
    if style == "ltx2":
        return named("ltx2-t2v")
    return named("generic-t2v")


@cache
def named(name: str) -> SystemPrompt:
    if name == "ltx2-t2v":
        from diffusers.pipelines.ltx2.utils import T2V_DEFAULT_SYSTEM_PROMPT

        return SystemPrompt(name, T2V_DEFAULT_SYSTEM_PROMPT)
    return SystemPrompt(name, (_FOLDER / f"{name}.txt").read_text(encoding="utf-8"))
