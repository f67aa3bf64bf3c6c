"""Quickstart on SmolLM2-135M-Instruct: load, chat, extract a persona vector from example texts with no judge,
steer with it, and see the change; then the same vector on a plain transformers model.

    python examples/quickstart.py            # ~10 s on a laptop CPU
    python examples/quickstart.py --tiny     # shorter replies (what the tests run)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import traitlab
from traitlab import PersonaVector

# Contrastive examples of the trait: what an extravert and an introvert might say. Any texts work (or
# (question, answer) pairs, then the vector is the mean over the answers' tokens under the chat template).
EXTRAVERT = ["I love meeting new people and talking all night at parties!",
             "Let's invite everyone over, the more the merrier!",
             "I feel energized when I'm surrounded by friends."]
INTROVERT = ["I prefer to stay home alone with a quiet book.",
             "Large crowds drain me; I'd rather be by myself.",
             "I rarely speak up and enjoy solitude."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tiny", action="store_true", help="Short replies (tests).")
    parser.add_argument("--out", type=Path, default=None, help="Where to save the vector (default: a temp dir).")
    args = parser.parse_args()
    tokens = 16 if args.tiny else 40
    question = "How was your weekend?"

    lm = traitlab.load_model(args.model)  # a built-in name, a .gguf file, a model folder or a hub id
    print(f"{'unsteered:':<14}{lm.chat(question, max_new_tokens=tokens)}")

    # judge-free extraction: v_l = mean activation(extravert texts) - mean activation(introvert texts), every layer;
    # it steers at the layer that separates the two sets best
    vector = PersonaVector.from_pairs(lm, EXTRAVERT, INTROVERT, trait="extraversion")
    print(f"{'vector:':<14}layer {list(vector.vectors)} of {lm.num_layers}, |v| = "
          f"{float(vector.direction(next(iter(vector.vectors))).norm()):.1f}")

    for coef in (2.0, -2.0):  # h_l <- h_l + coef * v_l on the reply's tokens
        with vector.scaled(coef).applied(lm):
            print(f"{f'steered {coef:+g}:':<14}{lm.chat(question, max_new_tokens=tokens)}")

    folder = args.out or Path(tempfile.mkdtemp())
    path = vector.scaled(2.0).save(folder / "extraversion.tl.safetensors")  # one file, with the model's fingerprint
    print(f"{'saved:':<14}{path.name} (try: traitlab chat -m smollm2-135m-instruct --apply {path.name})")

    # the same vector on a plain transformers model (any AutoModelForCausalLM), steering-vectors style
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder_of_model = traitlab.model.resolve_spec(args.model)  # the cached HF folder of the built-in model
    model = AutoModelForCausalLM.from_pretrained(folder_of_model)
    tokenizer = AutoTokenizer.from_pretrained(folder_of_model)
    with vector.scaled(2.0).apply(model, tokenizer):
        print(f"{'HF model +2:':<14}{traitlab.wrap(model).chat(question, max_new_tokens=tokens)}")


if __name__ == "__main__":
    main()
