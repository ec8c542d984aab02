"""The --llm provider choice (SPEC §10, §11): a provider this build cannot run is bad configuration — one
line, exit 2, nothing created on disk — never a silent fallback to the builtin one."""
import subprocess

import pytest

from agentd import AGENTD_BIN, random_secret, sanitizer_env


def run_cli(args, tmp_path, env_extra=None, timeout=30):
    env = sanitizer_env()
    env.update(env_extra or {})
    p = subprocess.run([AGENTD_BIN] + args, cwd=str(tmp_path), env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_openai_not_built_yet_is_a_startup_error(tmp_path, how):
    data = tmp_path / "data"
    args = ["--port", "0", "--data-dir", str(data), "--jwt-secret", random_secret()]
    env = None
    if how == "flag":
        args += ["--llm", "openai"]
    else:
        env = {"LLM_PROVIDER": "openai"}
    rc, out, err = run_cli(args, tmp_path, env)
    assert rc == 2, (rc, out, err)
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) == 1, "expected one line, got %r" % lines
    assert "--llm" in lines[0] and "openai" in lines[0] and "not built" in lines[0], lines[0]
    assert "listening" not in out
    # refused before the data directory and the database were made
    assert not data.exists(), list(data.iterdir())


def test_unknown_provider_is_rejected(tmp_path):
    rc, out, err = run_cli(["--data-dir", str(tmp_path / "d"), "--jwt-secret", random_secret(), "--llm", "gpt"],
                           tmp_path)
    assert rc == 2, (rc, out, err)
    assert "--llm" in out + err and "builtin or openai" in out + err
