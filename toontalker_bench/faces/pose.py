"""The 20-D pose vector shared by the demo corpus, the AnimeCeleb-style baseline and the metric validation.

AnimeCeleb's form: 17 expression morphs in [0, 1] followed by head rotation (yaw, pitch, roll) in degrees.
Sign conventions: yaw > 0 turns the face towards the image's right, pitch > 0 tilts the chin up, roll > 0 rotates
the face clockwise on screen.
"""

from __future__ import annotations

MORPHS: tuple[str, ...] = (
    "blink_left", "blink_right",
    "eye_wide_left", "eye_wide_right",
    "brow_up_left", "brow_up_right",
    "brow_down_left", "brow_down_right",
    "mouth_open", "smile", "frown",
    "vowel_a", "vowel_i", "vowel_u", "vowel_e", "vowel_o",
    "eye_happy",
)
ANGLES: tuple[str, ...] = ("yaw", "pitch", "roll")
POSE_VECTOR: tuple[str, ...] = MORPHS + ANGLES
N_MORPHS = len(MORPHS)
POSE_DIM = len(POSE_VECTOR)
assert N_MORPHS == 17 and POSE_DIM == 20
