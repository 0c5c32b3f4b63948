"""The official LLP metric: hand-computed cases and equality with an independent loop-based reference."""
from __future__ import annotations

import numpy as np
import pytest

from avvp import metrics as M
from avvp.data.classes import CLASS_INDEX, LLP_CLASSES

K = 25
DOG, CAT, SPEECH = CLASS_INDEX["Dog"], CLASS_INDEX["Cat"], CLASS_INDEX["Speech"]


def empty(n: int = 1) -> np.ndarray:
    return np.zeros((n, 10, K), dtype=np.uint8)


def on(arr: np.ndarray, cls: int, first: int, last: int, video: int = 0) -> np.ndarray:
    """Set segments first..last (inclusive) of a class."""
    arr[video, first : last + 1, cls] = 1
    return arr


# ------------------------------------------------------------------------------------ hand-computed
def test_all_empty_video_scores_100_everywhere():
    r = M.evaluate_binary(empty(), empty(), empty(), empty())
    assert r.as_dict() == {
        "segment": {m: 100.0 for m in M.METRICS},
        "event": {m: 100.0 for m in M.METRICS},
        "avg": 100.0,
    }


def test_gt_0_4_pred_0_2_and_0_1():
    gt = on(empty(), DOG, 0, 4)
    s = M.score_videos(gt, empty(), on(empty(), DOG, 0, 2), empty())
    assert s.segment.video["audio"][0] == 0.75  # TP 3, FN 2: 6/8
    assert s.event.video["audio"][0] == 1.0  # IoU 3/5 = 0.6 >= 0.5
    s = M.score_videos(gt, empty(), on(empty(), DOG, 0, 1), empty())
    assert s.segment.video["audio"][0] == 4 / 7
    assert s.event.video["audio"][0] == 0.0  # IoU 2/5 = 0.4: one FP and one FN
    # the boundary IoU == 0.5 counts as a match
    s = M.score_videos(on(empty(), DOG, 0, 3), empty(), on(empty(), DOG, 0, 1), empty())
    assert s.event.video["audio"][0] == 1.0


def test_predicted_class_absent_from_gt_scores_zero():
    gt = on(empty(), DOG, 0, 9)
    pred = on(on(empty(), DOG, 0, 9), CAT, 2, 3)
    s = M.score_videos(gt, empty(), pred, empty())
    assert s.segment.per_class["audio"][0, DOG] == 1.0 and s.segment.per_class["audio"][0, CAT] == 0.0
    assert np.isnan(s.segment.per_class["audio"][0, SPEECH])  # skipped: no GT, no prediction
    assert s.segment.video["audio"][0] == 0.5


def test_extra_false_positive_class_halves_event_score():
    gt = on(empty(), DOG, 0, 4)
    exact = M.score_videos(gt, empty(), on(empty(), DOG, 0, 4), empty())
    extra = M.score_videos(gt, empty(), on(on(empty(), DOG, 0, 4), CAT, 6, 7), empty())
    assert exact.event.video["audio"][0] == 1.0 and extra.event.video["audio"][0] == 0.5


def test_event_matching_is_any_gt_event_not_one_to_one():
    gt = on(on(empty(), DOG, 0, 5), DOG, 7, 9)  # two GT events
    s = M.score_videos(gt, empty(), on(empty(), DOG, 0, 9), empty())
    # the single predicted event matches the first (IoU 6/10) -> TP; the second GT event (IoU 3/10) -> FN
    assert s.event.video["audio"][0] == 2 / 3
    c = M.event_counts(on(empty(), DOG, 0, 9), gt)
    assert (c.tp[0, DOG], c.fp[0, DOG], c.fn[0, DOG]) == (1, 0, 1)


def test_audio_visual_and_pooled_event_at_av():
    gt_a = on(empty(), DOG, 0, 9)
    gt_v = on(empty(), DOG, 0, 1)
    so_a = on(empty(), DOG, 0, 9)
    s = M.score_videos(gt_a, gt_v, so_a, empty())
    assert s.segment.video["audio"][0] == 1.0 and s.segment.video["visual"][0] == 0.0
    assert s.segment.video["audio_visual"][0] == 0.0  # GT_av = segments 0-1, SO_av empty
    # pooled per class: TP 10, FN 2 -> 20/22, not the mean (1 + 0)/2 of audio and visual
    assert s.segment.video["event"][0] == 20 / 22
    assert s.event.video["event"][0] == 2 / 3  # events: a TP 1; v FN 1 -> 2/(2+1)
    r = M.summarize(s)
    assert r.segment.type == (0.0 + 100.0 + 0.0) / 3
    assert r.segment.event == 100 * 20 / 22


def test_audio_visual_ground_truth_is_the_intersection():
    gt_a = on(empty(), DOG, 0, 5)
    gt_v = on(empty(), DOG, 3, 9)
    so = on(empty(), DOG, 3, 5)  # predicting exactly GT_a * GT_v in both modalities
    s = M.score_videos(gt_a, gt_v, so, so)
    assert s.segment.video["audio_visual"][0] == 1.0 and s.event.video["audio_visual"][0] == 1.0


def test_gates_remove_or_keep_segment_predictions():
    gt = on(empty(), DOG, 0, 9)
    probs = np.zeros((1, 10, K), np.float32)
    probs[0, :, DOG] = 0.9
    low, tie = np.full((1, K), 0.4, np.float32), np.full((1, K), 0.5, np.float32)
    assert M.evaluate(gt, gt, probs, probs, low).segment.audio == 0.0  # gated away -> FN everywhere
    assert M.evaluate(gt, gt, probs, probs, tie).segment.audio == 100.0  # >= 0.5 keeps
    assert M.evaluate(gt, gt, probs, probs, low, gate="none").segment.audio == 100.0
    # MA: audio by a_prob, visual by v_prob; MM-CSE: audio by the fused prob, visual by v_prob
    ma = M.evaluate(gt, gt, probs, probs, low, audio_video=tie, visual_video=low, gate="modality")
    assert (ma.segment.audio, ma.segment.visual) == (100.0, 0.0)
    mm = M.evaluate(gt, gt, probs, probs, low, audio_video=tie, visual_video=tie, gate="mmcse")
    assert (mm.segment.audio, mm.segment.visual) == (0.0, 100.0)
    so_a, so_v = M.binarize(probs, probs, tie, audio_video=low, visual_video=low, gate="modality")
    assert not so_a.any() and not so_v.any()
    with pytest.raises(ValueError, match="audio_video"):
        M.evaluate(gt, gt, probs, probs, tie, gate="modality")
    with pytest.raises(KeyError, match="known: global, mmcse, modality, none"):
        M.evaluate(gt, gt, probs, probs, tie, gate="fused")


def test_segment_threshold_is_greater_or_equal():
    gt = on(empty(), DOG, 0, 0)
    probs = np.zeros((1, 10, K), np.float32)
    probs[0, 0, DOG] = 0.5
    ones = np.ones((1, K), np.float32)
    assert M.evaluate(gt, empty(), probs, np.zeros_like(probs), ones).segment.audio == 100.0
    probs[0, 0, DOG] = np.nextafter(np.float32(0.5), np.float32(0))
    assert M.evaluate(gt, empty(), probs, np.zeros_like(probs), ones).segment.audio == 0.0


def test_input_validation():
    with pytest.raises(ValueError, match="binary"):
        M.score_videos(empty() + 2, empty(), empty(), empty())
    with pytest.raises(ValueError, match="one shape"):
        M.score_videos(empty(2), empty(), empty(), empty())
    with pytest.raises(ValueError, match="no videos"):
        M.score_videos(empty(0), empty(0), empty(0), empty(0))
    with pytest.raises(ValueError, match="expected shape"):
        M.evaluate(empty(), empty(), empty().astype(float), empty().astype(float), np.ones((1, 24)))


def test_per_class_table_means_over_non_skipped_videos():
    gt = on(on(empty(2), DOG, 0, 3, video=0), DOG, 0, 3, video=1)
    pred = on(on(empty(2), DOG, 0, 3, video=0), DOG, 0, 1, video=1)  # video 1: Dog F = 4/6
    pred = on(pred, CAT, 5, 5, video=1)  # Cat only predicted in video 1 -> F 0 there, skipped in video 0
    table = M.per_class_table(M.score_videos(gt, empty(2), pred, empty(2)))
    assert table.scores["segment"]["audio"][DOG] == 100 * np.mean([1.0, 4 / 6])
    assert table.scores["segment"]["audio"][CAT] == 0.0
    assert table.videos["segment"]["audio"][DOG] == 2 and table.videos["segment"]["audio"][CAT] == 1
    assert np.isnan(table.scores["segment"]["audio"][SPEECH]) and table.videos["segment"]["audio"][SPEECH] == 0
    d = table.as_dict()
    assert d["Dog"]["segment"]["videos"]["audio"] == 2 and d["Speech"]["event"]["audio"] is None
    assert list(d) == list(LLP_CLASSES)


def test_overlap_definition_and_split():
    gt_a, gt_v = empty(4), empty(4)
    on(on(gt_a, DOG, 0, 4, video=0), CAT, 4, 6, video=0)  # 2 audio classes in segment 4 -> overlapping
    on(on(gt_a, DOG, 0, 4, video=1), CAT, 5, 9, video=1)  # consecutive, never simultaneous -> not
    on(gt_a, DOG, 0, 9, video=2)
    on(gt_v, CAT, 0, 9, video=2)  # audible dog + visible cat in the same segment: different modalities -> not
    on(on(gt_v, DOG, 3, 3, video=3), SPEECH, 3, 3, video=3)  # 2 visual classes in segment 3 -> overlapping
    mask = M.overlapping_videos(gt_a, gt_v)
    assert mask.tolist() == [True, False, False, True]
    pred_a = on(empty(4), DOG, 0, 2, video=0)
    scores = M.score_videos(gt_a, gt_v, pred_a, empty(4))
    split = M.overlap_split(scores, mask)
    assert split["overlapping"] == M.evaluate_binary(gt_a[mask], gt_v[mask], pred_a[mask], empty(2))
    assert split["non_overlapping"] == M.evaluate_binary(gt_a[~mask], gt_v[~mask], pred_a[~mask], empty(2))
    assert split["overlapping"].num_videos == 2
    assert M.overlap_split(scores, np.zeros(4, bool))["overlapping"] is None


def test_result_as_dict_shape_and_avg():
    rng = np.random.default_rng(3)
    gt = (rng.random((5, 10, K)) < 0.1).astype(np.uint8)
    r = M.evaluate_binary(gt, gt[::-1], gt[:, ::-1], gt)
    d = r.as_dict()
    assert list(d) == ["segment", "event", "avg"]
    assert list(d["segment"]) == list(M.METRICS) == list(d["event"])
    ten = [d[level][m] for level in M.LEVELS for m in M.METRICS]
    assert d["avg"] == pytest.approx(sum(ten) / 10, abs=1e-12)
    assert d["segment"]["type"] == pytest.approx(
        (d["segment"]["audio"] + d["segment"]["visual"] + d["segment"]["audio_visual"]) / 3, abs=1e-12
    )


# --------------------------------------------------------------- independent loop-based reference
def ref_events(seq) -> list[set[int]]:
    """Maximal runs of consecutive active segments, as sets of segment indices."""
    events, current = [], set()
    for t in range(10):
        if seq[t]:
            current.add(t)
        elif current:
            events.append(current)
            current = set()
    if current:
        events.append(current)
    return events


def ref_event_counts(pred_seq, gt_seq) -> tuple[int, int, int]:
    preds, gts = ref_events(pred_seq), ref_events(gt_seq)

    def match(p, g):
        return len(p & g) >= 0.5 * len(p | g)

    tp = sum(1 for p in preds if any(match(p, g) for g in gts))
    fn = sum(1 for g in gts if not any(match(p, g) for p in preds))
    return tp, len(preds) - tp, fn


def ref_segment_counts(pred_seq, gt_seq) -> tuple[int, int, int]:
    tp = sum(1 for t in range(10) if pred_seq[t] and gt_seq[t])
    fp = sum(1 for t in range(10) if pred_seq[t] and not gt_seq[t])
    fn = sum(1 for t in range(10) if not pred_seq[t] and gt_seq[t])
    return tp, fp, fn


def ref_video_score(per_class: list[tuple[int, int, int]]) -> float:
    scores = []
    for tp, fp, fn in per_class:
        if tp + fp == 0 and tp + fn == 0:
            continue  # neither GT nor prediction: skipped
        scores.append(2 * tp / (2 * tp + fn + fp))
    return 1.0 if not scores else sum(scores) / len(scores)


def ref_video(gt_a, gt_v, so_a, so_v):
    """Per-video scores of one video; inputs are (K, 10) class-major lists like the reference."""
    gt_av = [[gt_a[c][t] * gt_v[c][t] for t in range(10)] for c in range(K)]
    so_av = [[so_a[c][t] * so_v[c][t] for t in range(10)] for c in range(K)]
    out = {}
    for level, counter in (("segment", ref_segment_counts), ("event", ref_event_counts)):
        a = [counter(so_a[c], gt_a[c]) for c in range(K)]
        v = [counter(so_v[c], gt_v[c]) for c in range(K)]
        av = [counter(so_av[c], gt_av[c]) for c in range(K)]
        pooled = [tuple(x + y for x, y in zip(a[c], v[c])) for c in range(K)]
        out[level] = {
            "audio": ref_video_score(a),
            "visual": ref_video_score(v),
            "audio_visual": ref_video_score(av),
            "event": ref_video_score(pooled),
        }
    return out


def ref_evaluate(gt_a, gt_v, pa, pv, video, a_video, v_video, gate):
    heads = {"global": (video, video), "modality": (a_video, v_video), "mmcse": (video, v_video), "none": (None, None)}
    gate_a, gate_v = heads[gate]
    per_video = {level: {m: [] for m in M.VIDEO_METRICS} for level in M.LEVELS}
    for i in range(gt_a.shape[0]):
        so_a = [[0] * 10 for _ in range(K)]
        so_v = [[0] * 10 for _ in range(K)]
        for c in range(K):
            keep_a = gate_a is None or gate_a[i, c] >= 0.5
            keep_v = gate_v is None or gate_v[i, c] >= 0.5
            for t in range(10):
                so_a[c][t] = int(keep_a and pa[i, t, c] >= 0.5)
                so_v[c][t] = int(keep_v and pv[i, t, c] >= 0.5)
        g_a = [[int(gt_a[i, t, c]) for t in range(10)] for c in range(K)]
        g_v = [[int(gt_v[i, t, c]) for t in range(10)] for c in range(K)]
        scores = ref_video(g_a, g_v, so_a, so_v)
        for level in M.LEVELS:
            for m in M.VIDEO_METRICS:
                per_video[level][m].append(scores[level][m])
    summary = {}
    for level in M.LEVELS:
        mean = {m: 100 * np.mean(np.array(per_video[level][m])) for m in M.VIDEO_METRICS}
        summary[level] = {
            "audio": mean["audio"],
            "visual": mean["visual"],
            "audio_visual": mean["audio_visual"],
            "type": (mean["audio_visual"] + mean["audio"] + mean["visual"]) / 3.0,
            "event": mean["event"],
        }
    ten = [summary[level][m] for level in M.LEVELS for m in M.METRICS]
    total = 0.0
    for x in ten:
        total += x
    summary["avg"] = total / 10.0
    return per_video, summary


def random_videos(n: int, seed: int):
    """GT made of random runs, with empty, sparse and dense videos (dense ones exceed 8 scored classes)."""
    rng = np.random.default_rng(seed)
    gt_a, gt_v = empty(n), empty(n)
    for i in range(n):
        regime = rng.choice(["empty", "sparse", "dense"], p=[0.1, 0.6, 0.3])
        if regime == "empty":
            continue
        n_classes = rng.integers(1, 4) if regime == "sparse" else rng.integers(8, 16)
        for c in rng.choice(K, size=n_classes, replace=False):
            for gt in (gt_a, gt_v):
                for _ in range(rng.integers(0, 3)):
                    start = rng.integers(0, 10)
                    gt[i, start : start + rng.integers(1, 8), c] = 1
    noise = lambda shape: rng.random(shape).astype(np.float32)  # noqa: E731

    def predict(gt):  # GT segments kept with probability 0.7, sparse false positives
        keep = gt * (0.3 + 0.7 * noise(gt.shape))
        false_pos = (rng.random(gt.shape) < 0.003) * (0.5 + 0.5 * noise(gt.shape))
        return np.maximum(keep, false_pos).astype(np.float32)

    pa, pv = predict(gt_a), predict(gt_v)
    pa[rng.random(pa.shape) < 0.001] = 0.5  # exact ties at the threshold
    video = noise((n, K))
    video[rng.random((n, K)) < 0.05] = 0.5
    return gt_a, gt_v, pa, pv, video, noise((n, K)), noise((n, K))


@pytest.mark.parametrize("gate, seed", [("global", 0), ("modality", 1), ("mmcse", 2), ("none", 3)])
def test_vectorised_metric_equals_loop_reference(gate, seed):
    gt_a, gt_v, pa, pv, video, a_video, v_video = random_videos(200, seed=seed)
    ref_per_video, ref_summary = ref_evaluate(gt_a, gt_v, pa, pv, video, a_video, v_video, gate)
    so_a, so_v = M.binarize(pa, pv, video, audio_video=a_video, visual_video=v_video, gate=gate)
    scores = M.score_videos(gt_a, gt_v, so_a, so_v)
    for level in M.LEVELS:
        for m in M.VIDEO_METRICS:
            got = getattr(scores, level).video[m]
            assert got.tolist() == ref_per_video[level][m], (level, m)  # exact, per video
    result = M.evaluate(gt_a, gt_v, pa, pv, video, audio_video=a_video, visual_video=v_video, gate=gate).as_dict()
    for level in M.LEVELS:
        for m in M.METRICS:
            assert result[level][m] == ref_summary[level][m], (level, m)  # exact float equality
    assert result["avg"] == ref_summary["avg"]
    # the draw exercises what it should: skipped classes, all-skipped videos, >= 8 scored classes
    counted = (~np.isnan(scores.segment.per_class["audio"])).sum(axis=1)
    assert (counted == 0).any() and (counted >= 8).any() and 0 < result["event"]["audio"] < 100


def test_one_results_table_for_eval_trainer_and_demo():
    """metrics.format_results is the one formatter (avvp-eval, the trainer's final table, the demo): a
    single result keeps avvp-eval's layout, named results get a row per level, one level names the heading."""
    from avvp.metrics import LevelResult, MetricResult, format_results

    lv = LevelResult(audio=61.234, visual=50.5, audio_visual=40.0, type=50.578, event=45.5)
    one = MetricResult(segment=lv, event=LevelResult(1.0, 2.0, 3.0, 2.0, 4.0), avg=25.0, num_videos=30)
    assert format_results(one, "title").splitlines() == [
        "title",
        "                   audio        visual  audio-visual       Type@AV      Event@AV",
        "segment            61.23         50.50         40.00         50.58         45.50",
        "event               1.00          2.00          3.00          2.00          4.00",
        "avg of the ten numbers: 25.00   (30 videos)",
    ]
    table = format_results({"val": one, "test": one}).splitlines()
    assert [line.split("  ")[0] for line in table[1:5]] == ["val segment", "val event", "test segment", "test event"]
    assert table[5:] == ["val: avg of the ten numbers: 25.00   (30 videos)", "test: avg of the ten numbers: 25.00   (30 videos)"]
    rows = format_results({"parsed": one, "weak labels everywhere": one}, levels=("segment",)).splitlines()
    assert rows[0].startswith("segment-level F") and rows[2].startswith("weak labels everywhere") and len(rows) == 3
    assert rows[1].split()[1:] == ["61.23", "50.50", "40.00", "50.58", "45.50"]
