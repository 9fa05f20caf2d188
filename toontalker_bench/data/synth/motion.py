"""Talking-like 20-D motion for the demo corpus: syllables in phrases, blinks, brow raises, smiles, head turns."""

from __future__ import annotations

import math

import numpy as np

from ...core import exact
from ...faces.pose import MORPHS, POSE_DIM

_MI = {name: i for i, name in enumerate(MORPHS)}


def smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian-filtered noise of length ``n`` (``sigma`` in frames)."""
    pad = int(4 * sigma) + 1
    x = exact.gaussian_filter1d(rng.standard_normal(n + 2 * pad), sigma)[pad:pad + n]
    return x * math.sqrt(2 * math.sqrt(math.pi) * sigma)  # the filter's output std is 1 / sqrt(2 sqrt(pi) sigma)


def _events(rng: np.random.Generator, n: int, fps: float, rate: float,
            dur: tuple[float, float]) -> list[tuple[int, int]]:
    """Poisson event times (``rate`` per second) with durations drawn from ``dur`` seconds: [(start, length)]."""
    out, t = [], rng.exponential(1 / rate) * fps
    while t < n:
        out.append((int(t), max(2, int(round(rng.uniform(*dur) * fps)))))
        t += rng.exponential(1 / rate) * fps + out[-1][1]
    return out


def _bump(length: int) -> np.ndarray:
    return exact.sin(np.pi * (np.arange(length) + 0.5) / length) ** 2


def talking_motion(rng: np.random.Generator, n: int, fps: float, yaw: float = 28.0, pitch: float = 10.0,
                   roll: float = 7.0) -> np.ndarray:
    """Talking-like motion (n, 20): syllables at speech rate in phrases, blinks, brow raises, smiles, head turns."""
    m = np.zeros((n, POSE_DIM))
    vow = np.zeros((n, 5))
    i = int(rng.uniform(0, 0.6) * fps)
    while i < n:  # phrases of syllables separated by pauses
        end = i + int(rng.uniform(1.2, 3.5) * fps)
        while i < min(end, n):
            d = max(3, int(round(rng.uniform(0.14, 0.3) * fps)))
            k, amp = rng.integers(5), rng.uniform(0.35, 1.0)
            seg = slice(i, min(i + d, n))
            vow[seg, k] = np.maximum(vow[seg, k], amp * _bump(d)[: seg.stop - seg.start])
            i += d
        i += int(rng.uniform(0.3, 1.0) * fps)
    vow = exact.gaussian_filter1d(vow, 1.0, axis=0)
    gain = np.array([1.0, 0.45, 0.35, 0.6, 0.85])  # jaw opening per vowel a i u e o
    m[:, _MI["mouth_open"]] = np.clip(exact.matmul(vow, gain), 0, 1)
    for j, v in enumerate("aiueo"):
        m[:, _MI[f"vowel_{v}"]] = np.clip(vow[:, j] * 1.2, 0, 1)
    for start, length in _events(rng, n, fps, 0.3, (0.18, 0.3)):  # blinks, sometimes a wink
        seg = slice(start, min(start + length, n))
        prof = _bump(length)[: seg.stop - seg.start]
        wink = rng.random() < 0.1
        sides = [rng.choice(["left", "right"])] if wink else ["left", "right"]
        for s in sides:
            m[seg, _MI[f"blink_{s}"]] = np.maximum(m[seg, _MI[f"blink_{s}"]], prof)
    for start, length in _events(rng, n, fps, 0.25, (0.5, 1.3)):  # brow raises (with wide eyes now and then)
        seg = slice(start, min(start + length, n))
        prof = _bump(length)[: seg.stop - seg.start] * rng.uniform(0.4, 1.0)
        wide = rng.random() < 0.4
        for s in ("left", "right"):
            m[seg, _MI[f"brow_up_{s}"]] += prof * rng.uniform(0.8, 1.0)
            if wide:
                m[seg, _MI[f"eye_wide_{s}"]] += prof * 0.7
    for start, length in _events(rng, n, fps, 0.08, (0.6, 1.5)):  # frowns
        seg = slice(start, min(start + length, n))
        prof = _bump(length)[: seg.stop - seg.start] * rng.uniform(0.4, 0.9)
        for s in ("left", "right"):
            m[seg, _MI[f"brow_down_{s}"]] += prof
        m[seg, _MI["frown"]] += 0.6 * prof
    smile = np.clip(0.35 * smooth_noise(rng, n, 1.5 * fps) + rng.uniform(-0.1, 0.4), 0, 1)
    m[:, _MI["smile"]] = smile
    m[:, _MI["eye_happy"]] = np.clip(1.5 * (smile - 0.45), 0, 1)
    m[:, :17] = np.clip(m[:, :17], 0, 1)
    speech = exact.gaussian_filter1d(m[:, _MI["mouth_open"]], 3)
    m[:, 17] = yaw * np.clip(0.55 * smooth_noise(rng, n, 0.9 * fps) + rng.uniform(-0.3, 0.3), -1, 1)
    m[:, 18] = pitch * np.clip(0.5 * smooth_noise(rng, n, 0.7 * fps), -1, 1) + 3.0 * (speech - math.fsum(speech) / n)
    m[:, 19] = roll * np.clip(0.5 * smooth_noise(rng, n, 1.1 * fps), -1, 1)
    return m
