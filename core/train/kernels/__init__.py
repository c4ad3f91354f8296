"""The training step's kernels, apart from the orchestration that picks them (core/train/model_setup.py). One file
per op; each has a plain-PyTorch path (the CPU, tests) that its test compares it with. What each replaces, and what
it measured (its module docstring has the detail):

- loss.py: the answer-only loss: the LM head only at trained positions, in recomputed chunks, instead of logits for
  every token (memory no longer grows with vocabulary × tokens).
- cross_entropy.py: fused linear cross-entropy (Triton) instead of Liger's, which synced on `.item()` at each call
  and cut 16k tokens into 64 chunks at a 152k vocabulary (setting `fused_ce`).
- fast_lora.py: PEFT's LoRA forward (`clone() + B(A(x))·s`, three full passes) as one `addmm`; with
  `fused_lora_grad` one backward node: 54.1k -> 57.1k tokens/s on modern-bf16 (H200).
- fused_blocks.py: q/k/v and gate/up -> SwiGLU -> down as one autograd node each (16-bit bases; `fused_blocks`):
  fewer launches where a 16k-token step waits on the CPU (~5,200 launches a step in an H200 profile).
- swiglu.py: SwiGLU on the fused gate/up output in one Triton kernel each way, instead of Liger's two-tensor one
  (which would copy both halves first).
- rms_norm.py: torch's fused `rms_norm` instead of Liger's Triton one: 161-190 µs against 560-586 µs for a
  16k-token norm forward and backward on an H200, 57 norms a step (`torch_rms_norm`).
- rope.py: RoPE on q and k in one Triton kernel each way instead of ~30 elementwise kernels a layer (~800 of a
  3,700-launch step); no gain measured at 32k tokens on one GPU, where the GPU is the bound (`fused_rope`).
"""
