"""Transfer Lab dashboard entry point (the guided pages arrive with the dashboard issue)."""
import streamlit as st

from tlcore.registry import get_spec, list_backbones

st.set_page_config(page_title="Transfer Lab", page_icon="🔬", layout="wide")
st.title("Transfer Lab")
st.write(
    "Train an image classifier on your own photos by transfer learning. "
    "The dashboard pages are being built; meanwhile the command line does the whole job:"
)
st.code("python -m tlcore train PHOTOS_FOLDER --out runs/my-run", language="bash")
st.subheader("Available backbones")
st.dataframe(
    [
        {
            "backbone": spec.display_name or spec.name,
            "name": spec.name,
            "input": spec.input_size,
            "parameters (M)": round(spec.params / 1e6, 1),
            "ImageNet top-1": f"{spec.imagenet_top1:.1%}",
            "weights": "offline" if spec.offline else "downloaded on first use",
        }
        for spec in map(get_spec, list_backbones())
    ],
    hide_index=True,
)
