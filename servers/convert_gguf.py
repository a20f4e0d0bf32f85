"""Convert a GGUF checkpoint into a Hugging Face safetensors directory that vLLM can serve.

Runs inside the vLLM venv (needs torch, transformers, gguf, safetensors):

    python servers/convert_gguf.py MODEL.gguf OUT_DIR [--tied-embeddings auto|yes|no]

vLLM CPU cannot serve GGUF directly, so the weights are dequantised once with transformers
(``from_pretrained(..., gguf_file=...)``) and written as float32 safetensors. ``save_pretrained``
refuses GGUF-loaded models, so only the config, generation config and tokenizer go through
``save_pretrained``; the state dict is written with ``safetensors`` directly.

Tied embeddings: when the GGUF has no separate ``output.weight`` (SmolLM2), the output layer is
the embedding matrix. Then ``model.embed_tokens.weight`` is kept, ``lm_head.weight`` is dropped and
``tie_word_embeddings`` is set, otherwise vLLM generates garbage. When the GGUF does ship an
``output.weight`` (the Qwen2.5-Coder AWQ file), both matrices are kept and the config is untied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _log(msg: str) -> None:
    print(f"[convert_gguf] {msg}", file=sys.stderr, flush=True)


def gguf_has_output_weight(gguf_path: Path) -> bool:
    """True when the GGUF ships its own output projection (untied embeddings)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    return any(t.name == "output.weight" for t in reader.tensors)


def gguf_chat_template(gguf_path: Path) -> str | None:
    """The ``tokenizer.chat_template`` string stored in the GGUF metadata, if any."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    field = reader.fields.get("tokenizer.chat_template")
    if field is None:
        return None
    value = field.contents()
    return value if isinstance(value, str) and value else None


def convert(gguf_path: Path, out_dir: Path, tied_embeddings: str = "auto") -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = gguf_path.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    src_dir, gguf_name = str(gguf_path.parent), gguf_path.name

    if tied_embeddings == "auto":
        tied = not gguf_has_output_weight(gguf_path)
    else:
        tied = tied_embeddings == "yes"
    _log(f"tied embeddings: {tied} (mode {tied_embeddings})")

    t0 = time.monotonic()
    _log(f"loading tokenizer from {gguf_path}")
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_name)
    _log(f"loading and dequantising model from {gguf_path}")
    model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_name, dtype=torch.float32)
    model.eval()
    _log(f"loaded in {time.monotonic() - t0:.1f}s")

    state = model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if tied and name == "lm_head.weight":
            continue
        tensors[name] = tensor.detach().to(torch.float32).contiguous().clone()
    if tied and "model.embed_tokens.weight" not in tensors:
        raise SystemExit("tied embeddings requested but model.embed_tokens.weight is missing")
    if not tied and "lm_head.weight" not in tensors:
        raise SystemExit("untied embeddings requested but lm_head.weight is missing")

    model.config.tie_word_embeddings = tied
    # Older configs also carry the flag on a text sub-config; keep them consistent.
    text_config = getattr(model.config, "text_config", None)
    if text_config is not None and hasattr(text_config, "tie_word_embeddings"):
        text_config.tie_word_embeddings = tied
    model.config.dtype = "float32"
    model.config.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)
    # The weights are written dequantised: drop the GGUF quantization_config that transformers
    # attached, or vLLM would try to load the safetensors as a GGUF-quantised checkpoint.
    cfg_path = out_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg["tie_word_embeddings"] = tied
    cfg["dtype"] = "float32"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    if not getattr(tokenizer, "chat_template", None):
        template = gguf_chat_template(gguf_path)
        if template:
            tokenizer.chat_template = template
    tokenizer.save_pretrained(out_dir)

    n_params = sum(t.numel() for t in tensors.values())
    _log(f"writing {len(tensors)} tensors ({n_params / 1e6:.1f}M params, float32)")
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})

    tok_cfg_path = out_dir / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text()) if tok_cfg_path.exists() else {}
    template = tok_cfg.get("chat_template") or getattr(tokenizer, "chat_template", None)
    if not template:
        template = gguf_chat_template(gguf_path)
    if not template:
        raise SystemExit("no chat template found in the GGUF; /v1/chat/completions would fail")
    if tok_cfg.get("chat_template") != template:
        # Newer transformers write chat_template.jinja instead; vLLM reads both, but keep the
        # template in tokenizer_config.json too so every consumer finds it.
        tok_cfg["chat_template"] = template
        tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")
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
