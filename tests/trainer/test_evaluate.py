"""Evaluation: loss/perplexity by hand, choice accuracy, and evaluating with a patch applied."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.evaluate import evaluate, evaluate_directory
from trainer.tiny import build_model


def test_loss_is_the_token_weighted_mean_over_completions(tiny_tokenizer):
    model = build_model()
    rows = [{"prompt": "The answer is", "completion": " yes"}, {"text": "A longer plain text row here."}]
    result = evaluate(model, tiny_tokenizer, rows)
    total, count = 0.0, 0
    for prompt, completion in (("The answer is", " yes"), ("", "A longer plain text row here.")):
        p = tiny_tokenizer(prompt)["input_ids"]
        c = tiny_tokenizer(completion, add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
        ids = torch.tensor([p + c])
        with torch.no_grad():
            logprobs = F.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
        for pos in range(len(p), len(p) + len(c)):
            total -= float(logprobs[pos - 1, ids[0, pos]])
            count += 1
    assert result.tokens == count
    assert math.isclose(result.loss, total / count, rel_tol=1e-5)
    assert math.isclose(result.perplexity, math.exp(result.loss), rel_tol=1e-9)
    assert result.accuracy is None


def test_accuracy_follows_the_summed_choice_log_likelihood(tiny_tokenizer):
    model = build_model()
    prompt, choices = "Pick one:", [" alpha", " beta gamma", " delta"]

    def score(choice):
        p = tiny_tokenizer(prompt)["input_ids"]
        c = tiny_tokenizer(choice, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = F.log_softmax(model(input_ids=torch.tensor([p + c])).logits[0, :-1], dim=-1)
        return sum(float(lp[len(p) + i - 1, t]) for i, t in enumerate(c))

    best = max(range(3), key=lambda i: score(choices[i]))
    right = {"prompt": prompt, "choices": choices, "answer": best}
    wrong = {"prompt": prompt, "choices": choices, "answer": (best + 1) % 3}
    result = evaluate(model, tiny_tokenizer, [right, right, wrong, {"text": "plain"}])
    assert result.choice_rows == 3 and math.isclose(result.accuracy, 2 / 3)


def test_evaluate_directory_with_a_patch_changes_the_loss(tiny_model_dir, write_jsonl, train_rows):
    from tests.trainer.conftest import make_random_patch
    from trainer.patch.io import save_patch

    data = write_jsonl(train_rows)
    patch = make_random_patch(build_model(), {"model.layers.0.mlp.down_proj": "columns"})
    patch_path = save_patch(patch, data.parent / "p.safetensors")
    base = evaluate_directory(tiny_model_dir, data)
    patched = evaluate_directory(tiny_model_dir, data, patch_path)
    again = evaluate_directory(tiny_model_dir, data)
    assert patched.loss != base.loss and again.loss == base.loss
    assert base.rows == len(train_rows)


def test_the_right_choice_is_scored_from_the_loss_sequence_with_the_same_numbers(tiny_tokenizer):
    """A choice row's loss sequence (prompt + right choice + EOS) holds the right choice, so only the
    other choices run: 2 sequences per two-choice row, not 3, and every choice's scored tokens are
    those of the choice run on its own (a row with an explicit completion still runs all of them)."""
    model = build_model()
    rows = [
        {"prompt": f"Question {i}:", "choices": [" yes it is", " no"], "answer": i % 2} for i in range(4)
    ] + [{"prompt": "Other:", "choices": [" a", " b"], "answer": 0, "completion": " something else"}]
    sequences = []
    hook = model.register_forward_pre_hook(
        lambda _m, args, kw: sequences.append(len(kw["input_ids"])), with_kwargs=True
    )
    result = evaluate(model, tiny_tokenizer, rows, keep_logprobs=True)
    hook.remove()
    assert sum(sequences) == 4 * 2 + 3  # the explicit completion differs from both choices

    def alone(prompt: str, text: str) -> torch.Tensor:
        p = tiny_tokenizer(prompt)["input_ids"]
        c = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = F.log_softmax(model(input_ids=torch.tensor([p + c])).logits[0, :-1], dim=-1)
        return torch.tensor([float(lp[len(p) + i - 1, t]) for i, t in enumerate(c)])

    correct = 0
    for row, kept in zip(rows, result.logprobs, strict=True):
        choice_lps = [alone(row["prompt"], c) for c in row["choices"]]
        torch.testing.assert_close(
            kept[-sum(len(lp) for lp in choice_lps) :], torch.cat(choice_lps), atol=1e-5, rtol=0
        )
        scores = [float(lp.sum()) for lp in choice_lps]
        correct += int(max(range(2), key=scores.__getitem__) == row["answer"])
    assert math.isclose(result.accuracy, correct / len(rows))
