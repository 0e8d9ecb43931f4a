"""A stand-in for an external stitching tool, run by the external-stitcher tests.

Usage: fake_stitcher.py MODE OUTPUT INPUT...  where MODE is ``concat`` (write the inputs side by side with an
alpha channel), ``hang`` (sleep far longer than the test's timeout) or ``fail`` (log an error, exit 3).
"""

import sys
import time


def concat(output: str, inputs: list[str]) -> None:
    import cv2  # imported here: only this mode needs it, and importing it takes a while
    import numpy as np

    images = [cv2.imread(path) for path in inputs]
    panorama = cv2.hconcat(images)
    alpha = np.full(panorama.shape[:2], 255, np.uint8)
    alpha[:, : images[0].shape[1] // 2] = 0  # pretend the left half of the first frame was not covered
    cv2.imwrite(output, np.dstack((panorama, alpha)))
    print(f"wrote {output}")


mode, output, *inputs = sys.argv[1:]
print(f"fake-stitcher: {mode} with {len(inputs)} inputs", flush=True)
if mode == "hang":
    time.sleep(120)
if mode == "fail":
    print("error: control points missing for image 1", file=sys.stderr)
    sys.exit(3)
concat(output, inputs)
