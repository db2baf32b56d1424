"""Resident memory of each EmbeddingGemma variant after loading and embedding a few passages, one
fresh process per variant:  python bench/gemma/memory.py [torch onnx-fp32 onnx-int8 onnx-int8keep]"""
import os
import subprocess
import sys

CODE = r'''
import os, sys, time, psutil
sys.path.insert(0, os.path.dirname(sys.argv[1]))
from pathlib import Path
from bench_gemma import TorchVariant, OnnxVariant
v = sys.argv[2]; model = Path("/tmp/gemma/model/model_download")
base = psutil.Process().memory_info().rss
var = TorchVariant(model, 2) if v == "torch" else OnnxVariant(v, Path(f"/tmp/gemma/onnx/gemma.{v.split('-', 1)[1]}.onnx"), model, 2)
var.set_max_length(256)
var.docs(["title text " * 120] * 8); var.query("how fast is it?")
print(f"{v}: RSS {psutil.Process().memory_info().rss / 2**20:.0f} MiB after load + 8 passages of 256 tokens (bare interpreter: {base / 2**20:.0f} MiB)")
'''
for v in sys.argv[1:] or ["torch", "onnx-fp32", "onnx-int8", "onnx-int8keep"]:
    subprocess.run([sys.executable, "-c", CODE, os.path.abspath(__file__), v], env={**os.environ, "HF_HUB_OFFLINE": "1"})
