import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageOps

model = Interpreter(model_path=sys.argv[1])
model.allocate_tensors()
inp, out = model.get_input_details()[0], model.get_output_details()[0]
height, width = int(inp["shape"][1]), int(inp["shape"][2])
labels = Path(sys.argv[1]).with_name("labels.txt").read_text(encoding="utf-8").splitlines()
for path in sys.argv[2:]:
    image = Image.open(path)
    image.draft("RGB", (2 * width, 2 * height))  # big JPEGs: decode at reduced scale, as in training
    image = ImageOps.exif_transpose(image).convert("RGBA")  # transparent pixels become white
    image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    image = image.resize((width, height), Image.BILINEAR)
    model.set_tensor(inp["index"], np.asarray(image, np.float32)[None])  # RGB 0..255, as is
    model.invoke()
    probs = model.get_tensor(out["index"])[0]
    print(f"{path}\t{labels[probs.argmax()]}\t{probs.max():.4f}")
