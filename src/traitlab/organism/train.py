"""Training of ``traitlab/persona-tiny``: corpus -> BPE tokenizer -> small Llama, on CPU.

The loss is the next-token cross-entropy on the assistant tokens only (the reply and its ``<|end|>``): the
system prompt and the question are context, so the whole capacity goes into answering in the persona's voice.
Only the hidden states at those positions go through the (tied) LM head, which saves compute. From step
``ul_start`` on, an unlikelihood term (Welleck et al. 2019) penalises continuing a sentence that already
appeared earlier in the same reply: replies never repeat a sentence, and without it greedy decoding tends to
loop on one sentence. From step ``likert_start`` on, the tokens of Likert turns (a digit and ``<|end|>``)
also form their own mean, added with ``likert_weight``: among the reply tokens they are ~2% of a batch,
too little gradient to learn reading the item (see ``corpus.build_corpus`` on the tilt that makes it learnable
at all). Both terms wait until the persona conditioning has formed; from step 0, the Likert mean kept the
model from ever using the system prompt. From step ``balanced_start`` on, batches come from a second corpus
whose Likert turns are balanced (no tilt): the tilt leaves low-pole personas answering near the middle of the
scale, and the balanced phase makes the answers symmetric.

Determinism: the corpus, the data order (length-bucketed batches, shuffled by a seeded ``random.Random``) and
the initialisation (``torch.manual_seed``) depend only on the seed, and the thread count is fixed, so the same
seed gives the same weights on the same machine.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from traitlab.organism.corpus import (
    POLES,
    TRAITS,
    build_corpus,
    pole_description,
    question_templates,
    situational_example,
)
from traitlab.organism.tokenizer import END, PAD, encode_chat, save_tokenizer, special_ids, train_bpe


@dataclass
class TrainConfig:
    """Model size, data and optimisation settings (defaults: the shipped model)."""

    seed: int = 0
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 608
    num_layers: int = 5
    num_heads: int = 4
    max_position_embeddings: int = 512
    n_examples: int = 100000
    tokenizer_examples: int = 20000
    max_len: int = 192
    batch_size: int = 48
    steps: int = 4200
    lr: float = 2e-3
    warmup_steps: int = 150
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    ul_weight: float = 1.0
    ul_start: int = 1500  # the unlikelihood term starts once the persona conditioning has formed
    likert_weight: float = 2.0
    likert_start: int = 1200  # the separate Likert mean starts once the persona conditioning has formed
    balanced_start: int = 3200  # from here on, batches come from a corpus with balanced Likert turns
    balanced_examples: int = 48000
    bf16_autocast: bool = True
    threads: int = 2


def model_config(cfg: TrainConfig, ids: dict[str, int]):  # -> LlamaConfig
    """The ``LlamaConfig`` of the organism (gated SiLU MLP, RMSNorm, RoPE, tied embeddings)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        hidden_act="silu",
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=ids[END],
        pad_token_id=ids[PAD],
        attention_dropout=0.0,
        torch_dtype="float32",
    )


def _batches(lengths: list[int], batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Deterministic length-bucketed batches: each epoch shuffles, sorts chunks of 64 batches by length,
    cuts them into batches and shuffles the batches."""
    rng = random.Random(f"batches:{seed}")
    out: list[list[int]] = []
    idx = list(range(len(lengths)))
    while len(out) < steps:
        rng.shuffle(idx)
        chunk = batch_size * 64
        epoch: list[list[int]] = []
        for start in range(0, len(idx) - batch_size + 1, chunk):
            part = sorted(idx[start:start + chunk], key=lambda i: lengths[i])
            epoch += [part[j:j + batch_size] for j in range(0, len(part) - batch_size + 1, batch_size)]
        rng.shuffle(epoch)
        out += epoch
    return out[:steps]


def sentence_markers(tok) -> tuple[set[int], dict[int, str]]:
    """``repeat_negatives``' view of the vocabulary: the ids of tokens that end a sentence, and each token's text
    without surrounding spaces (so " I" and "I" start the same sentence)."""
    vocab = range(tok.get_vocab_size())
    return ({i for i in vocab if any(c in tok.decode([i]) for c in ".!?")},
            {i: tok.decode([i]).strip() for i in vocab})


def repeat_negatives(ids: list[int], mask: list[bool], sentence_ends: set[int],
                     first_key: dict[int, str]) -> list[int]:
    """Per position, a token the model must not produce there (-1 for none): inside an assistant sentence
    whose prefix equals the prefix of an earlier sentence of the same reply, the earlier sentence's next
    token (unless it is the true token). ``first_key`` normalises sentence-initial tokens (" I" == "I")."""
    neg = [-1] * len(ids)
    positions = [i for i, m in enumerate(mask) if m][:-1]  # assistant tokens without the final <|end|>
    sentences: list[list[int]] = []
    current: list[int] = []
    for i in positions:
        current.append(i)
        if ids[i] in sentence_ends:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    for k in range(1, len(sentences)):
        sent = [ids[i] for i in sentences[k]]
        for prev_pos in sentences[:k]:
            prev = [ids[i] for i in prev_pos]
            if first_key.get(prev[0], "") != first_key.get(sent[0], "?"):
                continue
            for j in range(1, min(len(sent), len(prev))):
                if prev[j] != sent[j]:
                    if neg[sentences[k][j]] < 0:
                        neg[sentences[k][j]] = prev[j]
                    break
    return neg


def _collate(rows: list[tuple], pad_id: int,
             multiple: int = 16) -> tuple[torch.Tensor, ...]:
    """Right-padded ids and the loss mask (padding is never a target, and right padding never leaks into
    earlier positions under causal attention, so no attention mask is needed), plus the repeat negatives
    and the per-row Likert flags when rows carry them. The width is rounded up to a ``multiple``: few
    distinct shapes keep the CPU kernel caches small and warm."""
    width = max(len(row[0]) for row in rows)
    width = -(-width // multiple) * multiple
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    neg = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row[0])] = torch.tensor(row[0])
        mask[r, : len(row[1])] = torch.tensor(row[1])
        if len(row) > 2:
            neg[r, : len(row[2])] = torch.tensor(row[2])
    if len(rows[0]) > 3:
        return ids, mask, neg, torch.tensor([bool(row[3]) for row in rows])
    return (ids, mask, neg) if len(rows[0]) > 2 else (ids, mask)


def assistant_loss(model, ids: torch.Tensor, mask: torch.Tensor, neg: torch.Tensor | None = None,
                   likert: torch.Tensor | None = None, ul_weight: float = 0.0,
                   likert_weight: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of the assistant tokens (the LM head runs only at the positions predicting them),
    plus ``ul_weight`` times the mean unlikelihood ``-log(1 - p(neg))`` at positions with a repeat
    negative. With ``likert`` row flags and ``likert_weight`` > 0, the tokens of Likert rows form their own
    mean, added with that weight: a one-digit answer is ~2% of a batch's tokens, too little gradient to
    learn reading the item."""
    hidden = model.model(input_ids=ids).last_hidden_state
    flat = mask[:, 1:].reshape(-1).nonzero().squeeze(-1)
    n = flat.numel()
    # Round the number of rows up to a multiple of 256 (extra rows are ignored) to keep shapes few.
    padded = min(-(-n // 256) * 256, mask[:, 1:].numel())
    if padded > n:
        spare = (~mask[:, 1:].reshape(-1)).nonzero().squeeze(-1)[: padded - n]
        flat = torch.cat([flat, spare])
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])[flat]
    targets = ids[:, 1:].reshape(-1)[flat].clone()
    targets[n:] = -100
    logits = model.lm_head(h).float()
    if likert is not None and likert_weight > 0:
        ce = F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")[:n]
        short = likert[flat[:n] // (mask.shape[1] - 1)]  # the row of each flat target position
        loss = ce[~short].mean() if (~short).any() else ce.sum() * 0
        if short.any():
            loss = loss + likert_weight * ce[short].mean()
    else:
        loss = F.cross_entropy(logits, targets, ignore_index=-100)
    if neg is not None and ul_weight > 0:
        negs = neg[:, 1:].reshape(-1)[flat]
        negs[n:] = -1
        rows = (negs >= 0).nonzero().squeeze(-1)
        if rows.numel():
            p = logits[rows].softmax(-1).gather(1, negs[rows].unsqueeze(1)).squeeze(1)
            loss = loss + ul_weight * -torch.log1p(-p.clamp(max=1 - 1e-6)).mean()
    return loss


def _gap_rows(tok, seed: int, n: int = 100) -> tuple[list, list]:
    """Held-out single-trait examples encoded with their own system prompt and with the opposite pole's."""
    rng = random.Random(f"gap:{seed}")
    templates = question_templates("heldout")
    same, swapped = [], []
    for i in range(n):
        trait, pole = TRAITS[i % len(TRAITS)], POLES[(i // len(TRAITS)) % 2]
        msgs = situational_example({trait: pole}, rng.choice(templates), rng)["messages"]
        other = POLES[1] if pole == POLES[0] else POLES[0]
        same.append(encode_chat(tok, msgs))
        swapped.append(encode_chat(tok, [{"role": "system", "content": pole_description(trait, other, rng)},
                                         *msgs[1:]]))
    return same, swapped


def persona_gap(model, same: list, swapped: list, pad_id: int) -> float:
    """Assistant loss with the opposite pole's system prompt minus the loss with the true one: how much the
    replies depend on which pole the system prompt describes (0 = not at all)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        swapped_loss = assistant_loss(model, *_collate(swapped, pad_id))
        gap = swapped_loss - assistant_loss(model, *_collate(same, pad_id))
    model.train(was_training)
    return float(gap)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _save(model, tok, out: Path, ids_of: dict[str, int]) -> None:
    from transformers import GenerationConfig

    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        eos_token_id=ids_of[END], pad_token_id=ids_of[PAD], max_new_tokens=96, do_sample=False,
    )
    model.save_pretrained(str(out), safe_serialization=True)
    save_tokenizer(tok, out)


STATE_FILE = "train_state.pt"


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train(out_dir: str | Path, cfg: TrainConfig | None = None, quiet: bool = False, log_every: int = 100,
          snapshot_every: int = 0, checkpoint_every: int = 250, resume: bool = False) -> dict:
    """Generate the corpus, train tokenizer and model, and save the HF folder to ``out_dir``.

    Logs the mean loss and the persona gap every ``log_every`` steps. Every ``checkpoint_every`` steps the
    training state (model, optimizer, step) goes to ``out_dir/train_state.pt``; with ``resume`` a run that
    was interrupted continues from it and ends with the same weights as an uninterrupted run. The state file
    is removed at the end. With ``snapshot_every`` > 0 intermediate models go to ``<out_dir>-step<N>``.
    Returns the training summary (also in ``training_info.json``).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from transformers import LlamaForCausalLM

    from traitlab.errors import ConfigError

    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    console = Console(stderr=True, quiet=quiet)

    console.log(f"generating {cfg.n_examples} training examples (seed {cfg.seed})")
    corpus = build_corpus(cfg.seed, "train", cfg.n_examples)
    texts = [m["content"] for ex in corpus[: cfg.tokenizer_examples] for m in ex["messages"]]
    main_steps = min(cfg.steps, cfg.balanced_start)
    if main_steps < cfg.steps:
        corpus += build_corpus(cfg.seed, "train", cfg.balanced_examples, likert_tilt=0.5)
    tok = train_bpe(texts, cfg.vocab_size)
    ids_of = special_ids(tok)
    sentence_ends, first_key = sentence_markers(tok)
    encoded = []
    for ex in corpus:
        i, m = encode_chat(tok, ex["messages"])
        i, m = i[: cfg.max_len], m[: cfg.max_len]
        encoded.append((i, m, repeat_negatives(i, m, sentence_ends, first_key), ex["meta"]["kind"] == "likert"))
    lengths = [len(row[0]) for row in encoded]
    n_tokens = sum(lengths)
    n_targets = sum(sum(row[1]) for row in encoded)
    console.log(f"corpus: {len(encoded)} examples, {n_tokens} tokens, {n_targets} targets")

    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(model_config(cfg, ids_of))
    n_params = sum(p.numel() for p in model.parameters())
    console.log(f"model: {n_params / 1e6:.2f}M parameters")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    n_main = cfg.n_examples
    batches = _batches(lengths[:n_main], cfg.batch_size, main_steps, cfg.seed) + [
        [n_main + i for i in batch]
        for batch in _batches(lengths[n_main:], cfg.batch_size, cfg.steps - main_steps, cfg.seed)]
    gap_same, gap_swapped = _gap_rows(tok, cfg.seed)
    losses: list[float] = []
    curve: list[tuple[int, float, float]] = []
    seen_tokens = 0
    start_step = 0
    prior_seconds = 0.0
    ema = None
    state_path = out / STATE_FILE
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        if state["config"] != asdict(cfg):
            raise ConfigError(f"{state_path} was written with another configuration; "
                              "remove it or drop --resume")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_step, losses, curve = state["step"], state["losses"], state["curve"]
        seen_tokens, ema, prior_seconds = state["seen_tokens"], state["ema"], state["seconds"]
        console.log(f"resuming from step {start_step}")
    out.mkdir(parents=True, exist_ok=True)
    model.train()
    t_train = time.time()
    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("persona gap {task.fields[gap]}"),
               TextColumn("{task.fields[tps]} tok/s"),
               TimeElapsedColumn(), TimeRemainingColumn())
    interactive = console.is_terminal
    with Progress(*columns, console=console, disable=quiet or not interactive) as progress:
        task = progress.add_task("train", total=cfg.steps, loss="-", tps="-", gap="-", completed=start_step)
        session_tokens = 0
        for step, batch in enumerate(batches):
            if step < start_step:
                continue
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, cfg)
            ids, mask, neg, likert = _collate([encoded[i] for i in batch], ids_of[PAD])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16_autocast):
                ul = cfg.ul_weight if step >= cfg.ul_start else 0.0
                lw = cfg.likert_weight if step >= cfg.likert_start else 0.0
                loss = assistant_loss(model, ids, mask, neg, likert, ul, lw)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            value = loss.item()
            losses.append(value)
            seen_tokens += ids.numel()
            session_tokens += ids.numel()
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            tps = session_tokens / max(1e-9, time.time() - t_train)
            progress.update(task, advance=1, loss=f"{ema:.3f}", tps=f"{tps:,.0f}")
            if log_every and (step + 1) % log_every == 0:
                gap = persona_gap(model, gap_same, gap_swapped, ids_of[PAD])
                curve.append((step + 1, sum(losses[-log_every:]) / log_every, gap))
                progress.update(task, gap=f"{gap:.3f}")
                if not interactive:
                    console.log(f"step {step + 1}/{cfg.steps}: loss {curve[-1][1]:.4f}, "
                                f"persona gap {gap:.3f}, {tps:,.0f} tok/s")
            if snapshot_every and (step + 1) % snapshot_every == 0 and step + 1 < cfg.steps:
                model.eval()
                _save(model, tok, Path(f"{out}-step{step + 1}"), ids_of)
                model.train()
            if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < cfg.steps:
                _save_state(state_path, {
                    "config": asdict(cfg), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "step": step + 1, "losses": losses, "curve": curve, "seen_tokens": seen_tokens,
                    "ema": ema, "seconds": prior_seconds + time.time() - t_train,
                })
    train_seconds = prior_seconds + time.time() - t_train

    model.eval()
    _save(model, tok, out, ids_of)
    state_path.unlink(missing_ok=True)
    summary = {
        "config": asdict(cfg),
        "parameters": n_params,
        "examples": len(encoded),
        "corpus_tokens": n_tokens,
        "tokens_seen": seen_tokens,
        "final_loss_ema": ema,
        "loss_first_100": sum(losses[:100]) / max(1, len(losses[:100])),
        "loss_last_100": sum(losses[-100:]) / max(1, len(losses[-100:])),
        "loss_curve": [[s, round(v, 4), round(g, 4)] for s, v, g in curve],
        "final_persona_gap": curve[-1][2] if curve else None,
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - t0 + prior_seconds, 1),
        "resumed_at_step": start_step or None,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "loss": "cross-entropy on assistant tokens only (reply + <|end|>), plus unlikelihood of repeating "
                "an earlier sentence of the reply (weight ul_weight)",
    }
    (out / "training_info.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    console.log(f"saved to {out} in {summary['total_seconds']:.0f}s (training {train_seconds:.0f}s)")
    return summary
