#!/usr/bin/env python3
"""hf_check.py BUILD_DIR - a Hugging Face cache encoded and mounted as it is, read by
huggingface_hub and transformers themselves (they are on the GPU machine, not in Debian): a small
Llama saved by transformers, laid out as huggingface_hub lays out a download (blobs/<sha256>,
snapshots/<rev>/ links, refs/main; two revisions sharing the weights' blob), encoded with
`wcodec encode`, mounted with wcodecfs. Checks: scan_cache_dir on the mount reports the same
repos, revisions, files and sizes as on the original, with no warnings; hf_hub_download(...,
local_files_only=True) resolves into the mount, same bytes; from_pretrained("org/name") offline
through HF_HUB_CACHE=mount gives the logits of the raw folder's model. Needs root and /dev/fuse.
Prints 'N passed, N failed'."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

B = os.path.realpath(sys.argv[1])
T = tempfile.mkdtemp(prefix="wchf.")
HUB, ENC, MNT = os.path.join(T, "hub"), os.path.join(T, "hub.wc"), os.path.join(T, "mnt")
passed = failed = 0


def ok(cond, name, detail=""):
    global passed, failed
    passed, failed = passed + bool(cond), failed + (not cond)
    print(f"{'ok' if cond else 'not ok'} - {name} {detail}".rstrip(), flush=True)


def make_cache():
    """A small Llama saved by transformers, as huggingface_hub stores a download of it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=1000)
    raw = os.path.join(T, "raw")
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(raw, safe_serialization=True)
    repo = os.path.join(HUB, "models--org--tiny")
    for d in ("blobs", "refs"):
        os.makedirs(os.path.join(repo, d))
    revs = ["1" * 40, "2" * 40]
    for rev in revs:  # revision 2: the same weights (one blob), a changed config
        os.makedirs(os.path.join(repo, "snapshots", rev))
        for name in sorted(os.listdir(raw)):
            src = os.path.join(raw, name)
            data = open(src, "rb").read()
            if rev == revs[1] and name == "config.json":
                data = data.replace(b'"rms_norm_eps"', b'"_revision": 2, "rms_norm_eps"')
            sha = hashlib.sha256(data).hexdigest()
            with open(os.path.join(repo, "blobs", sha), "wb") as f:
                f.write(data)
            os.symlink(f"../../blobs/{sha}", os.path.join(repo, "snapshots", rev, name))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(revs[1])
    return raw


def scan(root):
    from huggingface_hub import scan_cache_dir
    info = scan_cache_dir(root)
    repos = {(r.repo_id, r.repo_type, r.size_on_disk, r.nb_files,
              frozenset((v.commit_hash, frozenset((f.file_name, f.size_on_disk, os.path.basename(f.blob_path))
                                                   for f in v.files), frozenset(v.refs)) for v in r.revisions))
             for r in info.repos}
    return repos, [str(w) for w in info.warnings]


def main():
    raw = make_cache()
    r = subprocess.run([os.path.join(B, "wcodec"), "encode", "-q", HUB, ENC], capture_output=True, text=True)
    ok(r.returncode == 0 and not r.stderr, "encode the cache: no warning (every link leads inside it)", r.stderr[:200])
    blobs = os.listdir(os.path.join(ENC, "models--org--tiny", "blobs"))
    ok(sum(b.endswith(".wcodec") for b in blobs) == 1, "the weights' blob encoded once", str(blobs))
    os.makedirs(MNT)
    r = subprocess.run([os.path.join(B, "wcodecfs"), ENC, MNT, "-o", f"index_dir={T}/index"], capture_output=True,
                       text=True)
    ok(r.returncode == 0, "mount", r.stderr[:200])
    try:
        want, want_warn = scan(HUB)
        got, got_warn = scan(MNT)
        ok(not want_warn, "scan_cache_dir of the original: no warnings", str(want_warn)[:200])
        ok(not got_warn, "scan_cache_dir of the mount: no warnings", str(got_warn)[:200])
        ok(got == want, "scan_cache_dir: same repos, revisions, files and sizes")
        os.environ.update(HF_HUB_CACHE=MNT, HF_HUB_OFFLINE="1")
        from huggingface_hub import hf_hub_download
        for name in ("config.json", "model.safetensors"):
            p = hf_hub_download("org/tiny", name, local_files_only=True, cache_dir=MNT)
            orig = os.path.join(HUB, os.path.relpath(p, MNT))  # refs/main's revision of it
            ok(p.startswith(MNT) and open(p, "rb").read() == open(orig, "rb").read(),
               f"hf_hub_download {name}, local_files_only: in the mount, the original bytes", p)
        import torch
        from transformers import AutoModelForCausalLM
        ref = AutoModelForCausalLM.from_pretrained(raw, torch_dtype=torch.bfloat16).cuda().eval()
        m = AutoModelForCausalLM.from_pretrained("org/tiny", torch_dtype=torch.bfloat16, cache_dir=MNT).cuda().eval()
        ids = torch.randint(0, 1000, (1, 16), device="cuda")
        with torch.no_grad():
            same = torch.equal(ref(ids).logits, m(ids).logits)
        ok(same and getattr(m.config, "_revision", None) == 2,
           'from_pretrained("org/tiny") offline through the mount: refs/main\'s revision, the same logits')
    finally:
        subprocess.run(["umount", "-l", MNT])
        shutil.rmtree(T, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
