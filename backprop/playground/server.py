"""The playground's server: one page and one WebSocket per tab, each owning its training (Starlette).

Every request needs the per-run token; WebSocket connections whose Origin is another site are refused,
so a page elsewhere cannot drive training here. Messages are JSON, at most 64 kB:
``{"type": "setup", ...settings}``, ``upload`` (a CSV's name and text, at most 5 MB), ``play``, ``pause``,
``step`` (one epoch), ``reset``, ``code`` and ``download``. The server answers with ``points`` (the data),
``frame`` (epoch, losses, the output and hidden units over a grid, the weights), ``uploaded``, ``code``
(Python that repeats the training), ``model`` (a .bp file, base64) or ``error``; a bad message never stops
the server or the connection: every input is bounded (size, JSON depth, integer digits, text frames only).
At most MAX_CONNECTIONS tabs at once; a tab that goes stops its training at the next batch.
"""
import asyncio
import base64
import hmac
from pathlib import Path

from backprop.saving import bounded_json
from backprop.playground.session import (
    LIMITS,
    Session,
    SetupError,
    checked,
    read_upload,
)

MAX_MESSAGE = 64 * 1024
UNFORESEEN = "the server could not handle this message"
MAX_UPLOAD_MESSAGE = 2 * LIMITS["upload_bytes"] + MAX_MESSAGE  # JSON may escape a CSV's text to twice its size
MAX_CONNECTIONS = 8  # tabs at once: each holds a session and up to 5 MB of upload
FRAME_SECONDS = 0.03  # training between two frames while playing: about 25 frames a second with the frame


def create_app(token, allowed_origins=()):
    """The ASGI app for one run: ``token`` guards everything; ``allowed_origins`` are the page's own."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, PlainTextResponse
    from starlette.routing import Route, WebSocketRoute

    page = (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")

    def authorized(given):
        return isinstance(given, str) and hmac.compare_digest(given.encode(), token.encode())

    async def index(request):
        if not authorized(request.query_params.get("token")):
            return PlainTextResponse("403: this page needs the token printed by `backprop playground`", 403)
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    open_connections = set()

    async def socket(websocket):
        origin = websocket.headers.get("origin")
        if not authorized(websocket.query_params.get("token")) or (origin is not None and origin not in allowed_origins):
            await websocket.close(code=1008)
            return
        if len(open_connections) >= MAX_CONNECTIONS:
            await websocket.close(code=1013, reason=f"{MAX_CONNECTIONS} tabs are open already; close one")
            return
        await websocket.accept()
        connection = Connection(websocket)
        open_connections.add(connection)
        try:
            await connection.serve()
        finally:
            open_connections.discard(connection)

    return Starlette(routes=[Route("/", index), WebSocketRoute("/ws", socket)])


class Connection:
    """One tab: its session, whether it plays, and the lock that keeps one training at a time."""

    def __init__(self, websocket):
        self.websocket, self.session, self.playing, self.upload = websocket, None, False, None
        self.lock, self.wake = asyncio.Lock(), asyncio.Event()

    async def serve(self):
        from starlette.websockets import WebSocketDisconnect
        player = asyncio.create_task(self.play())
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is None:
                    await self.error("messages are JSON text, not binary frames")
                    continue
                await self.guarded(message["text"])
        except WebSocketDisconnect:
            pass
        finally:
            self.playing = False
            if self.session is not None:
                self.session.cancelled.set()  # its training thread ends at the next batch
            player.cancel()

    async def guarded(self, text):
        """``handle``; an exception it did not foresee is answered as an error naming it, never a traceback
        that ends the connection (the fuzzer in the tests counts these answers as failures)."""
        try:
            await self.handle(text)
        except (RuntimeError, ConnectionError):
            raise  # the socket itself is gone
        except Exception as error:  # noqa: BLE001
            await self.error(f"{UNFORESEEN}: {type(error).__name__}")

    async def handle(self, text):
        too_long = f"message of {len(text)} bytes; the limit is {MAX_MESSAGE} (an upload's: 5 MB of CSV)"
        if len(text) > MAX_UPLOAD_MESSAGE:
            return await self.error(too_long)
        try:
            message = bounded_json.loads(text, MAX_UPLOAD_MESSAGE, "the message")
        except ValueError as problem:  # not JSON, nested too deep, a 400-digit integer
            return await self.error(f"not JSON the page sends: {problem}")
        kind = message.get("type") if isinstance(message, dict) else None
        if kind != "upload" and len(text) > MAX_MESSAGE:
            return await self.error(too_long)
        if kind == "setup":
            try:
                await self.start(checked(message))
            except SetupError as problem:
                return await self.error(str(problem))
        elif kind == "upload":
            await self.receive_upload(message)
        elif kind in ("play", "pause", "step", "reset", "code", "download") and self.session is None:
            await self.error("send a setup first")
        elif kind == "play":
            self.playing = True
            self.wake.set()
        elif kind == "pause":
            self.playing = False
            if self.lock.locked():  # an epoch is running (a long one at the largest settings): undo and stop it
                self.session.interrupted.set()
        elif kind == "step":
            self.playing = False
            await self.train(epochs=1)
        elif kind == "reset":
            self.playing = False
            self.session.cancelled.set()
            await self.start(self.session.setup)
        elif kind == "code":
            async with self.lock:
                code = self.session.code(self.upload[0] if self.upload else None)
            await self.websocket.send_json({"type": "code", "code": code})
        elif kind == "download":
            async with self.lock:
                data = await asyncio.to_thread(self.session.model_file)
            await self.websocket.send_json({"type": "model", "name": "playground.bp",
                                            "data": base64.b64encode(data).decode()})
        else:
            await self.error(f"unknown message type {kind!r}"[:200])

    async def receive_upload(self, message):
        """Check a CSV now (both problems' readings may be asked for later) and keep it for setups."""
        name, text = message.get("name"), message.get("text")
        try:
            rows = len((await asyncio.to_thread(read_upload, name, text))[1])
        except SetupError as problem:
            return await self.error(str(problem), about="upload")
        self.upload = (name, text)
        await self.websocket.send_json({"type": "uploaded", "name": name, "rows": rows})

    async def start(self, setup):
        if self.session is not None:
            self.session.cancelled.set()  # a new setup: the old training ends at its next batch
        async with self.lock:
            session = await asyncio.to_thread(Session, setup, self.upload)
            self.session = session
            points, frame = await asyncio.to_thread(lambda: (session.points(), session.frame()))
        await self.websocket.send_json(points)
        await self.websocket.send_json(frame)

    async def train(self, epochs=1, seconds=None):
        async with self.lock:
            session = self.session
            await asyncio.to_thread(session.train, epochs, seconds)
            frame = await asyncio.to_thread(session.frame)
        if session.stopped_at is not None:
            self.playing = False  # early stopping ends play; Reset starts again
        await self.websocket.send_json(frame)

    async def play(self):
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.playing:
                await self.train(epochs=1, seconds=FRAME_SECONDS)

    async def error(self, text, about=None):
        """An error for the page; ``about`` names what failed when the page must undo something ("upload")."""
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate from the page's text
        await self.websocket.send_json({"type": "error", "message": text, **({"about": about} if about else {})})
