import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

model = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
inp = model.get_inputs()[0]  # "pixels": [batch, H, W, 3]
height, width = int(inp.shape[1]), int(inp.shape[2])
labels = Path(sys.argv[1]).with_name("labels.txt").read_text(encoding="utf-8").splitlines()
for path in sys.argv[2:]:
    image = Image.open(path)
    image.draft("RGB", (2 * width, 2 * height))  # big JPEGs: decode at reduced scale, as in training
    image = ImageOps.exif_transpose(image).convert("RGBA")  # transparent pixels become white
    image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    image = image.resize((width, height), Image.BILINEAR)
    pixels = np.asarray(image, np.float32)[None]  # RGB 0..255, as is; a batch of one (any batch size works)
    probs = model.run(None, {inp.name: pixels})[0][0]
    print(f"{path}\t{labels[probs.argmax()]}\t{probs.max():.4f}")
