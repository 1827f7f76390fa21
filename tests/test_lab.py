"`make lab`: a headless JupyterLab on nbs/ (loopback, a random token) lists the notebooks over its REST API, and a python3 kernel it starts imports pokecard and runs code; then the kernel and the server shut down and leave no process behind."
import json, os, secrets, signal, socket, subprocess, sys, time, uuid
from pathlib import Path
import pytest

pytest.importorskip("jupyterlab")  # the dev extra installs it
httpx = pytest.importorskip("httpx")
websocket = pytest.importorskip("websocket")  # websocket-client, a jupyter_server dependency
REPO = Path(__file__).resolve().parents[1]
NBS = REPO/"nbs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def alive(pid: int) -> bool:
    "True while `pid` runs (a zombie waiting to be reaped counts as gone)."
    try: return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError): return False


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition(): return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def lab(tmp_path):
    "`jupyter lab` as `make lab` starts it, with a random token and its own config/runtime folders; stopped however the test ends."
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path/"config"), "JUPYTER_RUNTIME_DIR": str(tmp_path/"runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path/"workspaces"), "JUPYTER_PLATFORM_DIRS": "1"}
    log = open(tmp_path/"lab.log", "w+")
    command = [str(Path(sys.executable).parent/"jupyter-lab"), "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={NBS}", "--ServerApp.port_retries=0",
               "--KernelManager.transport_encryption=auto"] + (["--allow-root"] if os.geteuid() == 0 else [])  # as `make lab` adds it
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"token {token}"}, timeout=30)
    state = {"kernel_pids": []}
    def up():
        assert server.poll() is None, f"jupyter lab exited with {server.returncode}:\n{(tmp_path/'lab.log').read_text()}"
        try: return client.get("/api/status").status_code == 200
        except httpx.TransportError: return False
    try:
        wait_until(up, 120, "jupyter lab to answer /api/status")
        yield dict(client=client, port=port, token=token, server=server, log=tmp_path/"lab.log", state=state)
    finally:
        client.close()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try: server.wait(30)
            except subprocess.TimeoutExpired: os.killpg(server.pid, signal.SIGKILL); server.wait(10)
        for pid in state["kernel_pids"]:  # kernels run in a session of their own: not in the server's process group
            if alive(pid): os.kill(pid, signal.SIGKILL)
        log.close()


def execute(port: int, token: str, kernel_id: str, code: str, timeout: float = 60) -> str:
    "Run `code` in a kernel through the server's websocket (as JupyterLab does); return its stdout."
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?token={token}", timeout=timeout)
    try:
        msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
        ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": "test", "version": "5.3"},
                            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                                        "allow_stdin": False, "stop_on_error": True}}))
        stdout, reply, idle, deadline = [], None, False, time.monotonic() + timeout
        while not (reply and idle):
            assert time.monotonic() < deadline, f"no reply to the execute request after {timeout:.0f} s"
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id: continue
            kind, content = message["header"]["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout": stdout.append(content["text"])
            elif kind == "error": raise AssertionError(f"{content['ename']}: {content['evalue']}")
            elif kind == "execute_reply": reply = content
            elif kind == "status" and content["execution_state"] == "idle": idle = True
        assert reply["status"] == "ok", reply
        return "".join(stdout)
    finally: ws.close()


def test_lab_lists_the_notebooks_and_runs_pokecard_in_a_kernel(lab):
    client, state = lab["client"], lab["state"]
    listing = client.get("/api/contents")
    assert listing.status_code == 200, listing.text
    names = {item["name"] for item in listing.json()["content"]}
    assert {"00_core.ipynb", "00j_pipeline.ipynb", "01_data.ipynb"} <= names
    assert names >= {p.name for p in NBS.glob("[0-9]*.ipynb")}
    assert client.get("/api/contents/01_data.ipynb").json()["type"] == "notebook"
    assert httpx.get(f"http://127.0.0.1:{lab['port']}/api/contents", params={"token": "wrong"}).status_code == 403  # a fresh client: no login cookie

    # open 01_data.ipynb as JupyterLab does (a session starts its python3 kernel), run its first code cells, then pokecard
    notebook = client.get("/api/contents/01_data.ipynb").json()["content"]
    first_cells = [cell["source"] for cell in notebook["cells"] if cell["cell_type"] == "code"][:2]
    assert first_cells[0].startswith("#| default_exp data") and "import" in first_cells[1]
    started = client.post("/api/sessions", json={"path": "01_data.ipynb", "name": "01_data.ipynb", "type": "notebook", "kernel": {"name": "python3"}})
    assert started.status_code == 201, started.text
    session_id, kernel_id = started.json()["id"], started.json()["kernel"]["id"]
    for source in first_cells: execute(lab["port"], lab["token"], kernel_id, source, timeout=180)
    out = execute(lab["port"], lab["token"], kernel_id,
                  "import os, pokecard, pokecard.core\nprint(os.getpid())\nprint('pokecard', pokecard.__version__, pokecard.core.project_root())\n"
                  "print(os.getcwd())\nprint(type(Experiment).__name__, Path.__name__)")  # Experiment, Path: imported by 01_data's cell
    pid, version_line, cwd, imported = out.strip().splitlines()
    state["kernel_pids"].append(int(pid))
    assert version_line == f"pokecard {__import__('pokecard').__version__} {REPO}"
    assert Path(cwd) == NBS and imported == "type Path"  # the notebook's folder, as in JupyterLab
    assert alive(int(pid))

    assert client.delete(f"/api/sessions/{session_id}").status_code == 204  # closing the notebook's kernel
    wait_until(lambda: not alive(int(pid)), 30, f"the kernel (pid {pid}) to exit")
    assert client.get("/api/kernels").json() == [] and client.get("/api/sessions").json() == []

    assert client.post("/api/shutdown").status_code in (200, 202, 204)
    lab["server"].wait(30)
    assert lab["server"].returncode == 0
    log = lab["log"].read_text()
    assert "without encryption" not in log, log  # --KernelManager.transport_encryption=auto, as in `make lab`
