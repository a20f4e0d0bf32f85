"""Convert a GGUF checkpoint into a Hugging Face safetensors directory that vLLM can serve.

Runs inside the vLLM venv (torch, transformers, gguf, safetensors); servers/README.md tells why
and the tied-embeddings trap:

    python servers/convert_gguf.py MODEL.gguf OUT_DIR [--tied-embeddings auto|yes|no]

``save_pretrained`` refuses GGUF-loaded models, so only the config, generation config and
tokenizer go through it; the dequantised float32 state dict is written with ``safetensors``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

_log = functools.partial(print, "[convert_gguf]", file=sys.stderr, flush=True)


def gguf_metadata(gguf_path: Path) -> tuple[bool, str | None]:
    """Whether the GGUF ships its own ``output.weight`` (untied embeddings), and its
    ``tokenizer.chat_template``."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    field = reader.fields.get("tokenizer.chat_template")
    template = field.contents() if field is not None else None
    has_output = any(t.name == "output.weight" for t in reader.tensors)
    return has_output, template if isinstance(template, str) and template else None


def convert(gguf_path: Path, out_dir: Path, tied_embeddings: str = "auto") -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = gguf_path.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    src_dir, gguf_name = str(gguf_path.parent), gguf_path.name
    has_output, gguf_template = gguf_metadata(gguf_path)
    tied = not has_output if tied_embeddings == "auto" else tied_embeddings == "yes"
    _log(f"tied embeddings: {tied} (mode {tied_embeddings})")

    t0 = time.monotonic()
    _log(f"loading the tokenizer and the model (dequantised) from {gguf_path}")
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_name, dtype=torch.float32)
    _log(f"loaded in {time.monotonic() - t0:.1f}s")

    tensors = {
        name: tensor.detach().to(torch.float32).contiguous().clone()
        for name, tensor in model.state_dict().items()
        if not (tied and name == "lm_head.weight")
    }
    if (kept := "model.embed_tokens.weight" if tied else "lm_head.weight") not in tensors:
        raise SystemExit(f"tied embeddings {tied} requested but {kept} is missing")

    # Older configs also carry the flag on a text sub-config; keep them consistent.
    text_config = getattr(model.config, "text_config", None)
    if text_config is not None and hasattr(text_config, "tie_word_embeddings"):
        text_config.tie_word_embeddings = tied
    model.config.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)
    # The weights are written dequantised: drop the GGUF quantization_config that transformers
    # attached, or vLLM would try to load the safetensors as a GGUF-quantised checkpoint.
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg |= {"tie_word_embeddings": tied, "dtype": "float32"}
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    template = getattr(tokenizer, "chat_template", None) or gguf_template
    if not template:
        raise SystemExit("no chat template found in the GGUF; /v1/chat/completions would fail")
    tokenizer.chat_template = template
    tokenizer.save_pretrained(out_dir)
    # Newer transformers write chat_template.jinja instead; vLLM reads both, but keep the
    # template in tokenizer_config.json too so every consumer finds it.
    tok_cfg_path = out_dir / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text()) if tok_cfg_path.exists() else {}
    if tok_cfg.get("chat_template") != template:
        tok_cfg["chat_template"] = template
        tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")

    n_params = sum(t.numel() for t in tensors.values())
    _log(f"writing {len(tensors)} tensors ({n_params / 1e6:.1f}M params, float32)")
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    _log(f"done in {time.monotonic() - t0:.1f}s -> {out_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf", type=Path, help="path to the .gguf file")
    parser.add_argument("out_dir", type=Path, help="output directory (HF format)")
    parser.add_argument(
        "--tied-embeddings",
        choices=("auto", "yes", "no"),
        default="auto",
        help="yes: keep embed_tokens, drop lm_head; no: keep both; "
        "auto: tied unless the GGUF has output.weight (default)",
    )
    args = parser.parse_args(argv)
    convert(args.gguf, args.out_dir, args.tied_embeddings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
