"""Generation through any OpenAI-compatible ``/chat/completions`` endpoint (standard library).

:class:`OpenAIBackend` sends one request per conversation from a thread pool (``concurrency``
requests in flight), retries what can succeed later — HTTP 408, 409, 429 and 5xx, timeouts,
refused or dropped connections, bodies cut short (``IncompleteRead``, a reset mid-body, a server
that hangs up before answering) and ``200`` replies that are not a chat completion (not JSON, no
``choices``, no text content) — with exponential backoff (honouring a ``Retry-After`` header), at
most ``max_retries + 1`` attempts, and records what still fails in the row's ``error`` instead of
raising. Other 4xx answers (a bad request, an unknown model, a bad key) fail at once, with the
server's message. It works with OpenAI, vLLM's and SGLang's servers, llama.cpp's
``llama-server``, Ollama, LiteLLM and the like.

Redirects are never followed: a ``3xx`` answer to the POST is an error of the row (not retried)
naming the requested URL and the ``Location``, so the request body and the ``Authorization``
header go to the configured host only. Point ``base_url`` at the final address instead.

The API key is read from the environment variable named by ``api_key_env`` at request time
(never stored on the object or in a cache); when the variable is unset, no ``Authorization``
header is sent (typical for local servers).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from hf_mig.models.generation.base import BaseBackend, GenerationCall, GenerationParams
from hf_mig.models.generation.results import GenerationResult, TokenLogprob, finished

logger = logging.getLogger(__name__)

__all__ = ["OpenAIBackend", "RETRY_STATUS"]

#: HTTP statuses retried with backoff (besides every 5xx).
RETRY_STATUS = frozenset({408, 409, 429})


class _Retryable(Exception):
    """A failure worth retrying; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Permanent(Exception):
    """A failure that retrying cannot fix."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Answer every redirect with ``None``: ``urllib`` then raises the ``3xx`` as an
    ``HTTPError`` instead of re-sending the request (and its headers) to the ``Location``."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


#: The opener of every request: the default handlers (proxies from the environment, HTTPS...)
#: with redirects refused.
_OPENER = urllib.request.build_opener(_RefuseRedirects())


class OpenAIBackend(BaseBackend):
    """Chat completions over HTTP from a thread pool, with retries, timeouts and a cache.

    Args:
        model: the served model name (sent as ``"model"``).
        base_url: the API root, e.g. ``"http://127.0.0.1:8000/v1"`` or
            ``"https://api.openai.com/v1"``; requests go to ``{base_url}/chat/completions``.
        api_key_env: name of the environment variable holding the API key.
        concurrency: requests in flight at once.
        timeout: seconds per request attempt (connect + read).
        max_retries: retries after the first attempt (so ``max_retries + 1`` attempts at most).
        backoff: first retry delay in seconds; it doubles after each retry (with up to 25%
            random jitter) and is capped by ``max_backoff``. A ``Retry-After`` header wins when
            larger.
        max_tokens_field: request field carrying ``max_new_tokens``: ``"max_tokens"`` (default,
            understood by every compatible server) or ``"max_completion_tokens"`` (required by
            some recent OpenAI models).
        extra_body: extra JSON fields merged into every request (e.g. ``{"top_k": 1}``). They
            are part of the cache key.
        headers: extra HTTP headers (not part of the cache key).
        cache, progress: see :class:`~hf_mig.models.generation.base.BaseBackend`.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_tokens_field: str = "max_tokens",
        extra_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        cache: Any = None,
        progress: bool = True,
    ) -> None:
        super().__init__(model, cache=cache, progress=progress)
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if backoff < 0 or max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")
        if max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise ValueError(
                f"max_tokens_field must be 'max_tokens' or 'max_completion_tokens', "
                f"got {max_tokens_field!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_tokens_field = max_tokens_field
        self.extra_body = dict(extra_body or {})
        self.headers = dict(headers or {})
        self._lock = threading.Lock()
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """HTTP attempts made by this object in this process (retries included)."""
        return self._attempts

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _options(self) -> dict[str, Any]:
        return {"extra_body": self.extra_body} if self.extra_body else {}

    @property
    def url(self) -> str:
        """The ``chat/completions`` endpoint."""
        return f"{self.base_url}/chat/completions"

    # ------------------------------------------------------------------ requests

    def request_body(self, messages: list[dict[str, Any]], params: GenerationParams) -> dict:
        """The JSON body sent for one conversation."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            self.max_tokens_field: params.max_new_tokens,
            "temperature": params.temperature,
        }
        if not params.greedy and params.top_p != 1.0:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        if params.logprobs:
            body["logprobs"] = True
            if params.top_logprobs:
                body["top_logprobs"] = params.top_logprobs
        if params.seed is not None:
            body["seed"] = params.seed
        body.update(self.extra_body)
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(self.headers)
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            status = err.code
            if 300 <= status < 400:
                location = err.headers.get("Location") if err.headers is not None else None
                err.close()
                raise _Permanent(
                    f"HTTP {status}: the server redirected the POST to {self.url} to "
                    f"{location or '(no Location header)'}; redirects are not followed (the "
                    "request and its credentials go to the configured host only): set base_url "
                    "to the final address"
                ) from err
            detail = _error_detail(err)
            if status >= 500 or status in RETRY_STATUS:
                raise _Retryable(f"HTTP {status}: {detail}", _retry_after(err)) from err
            raise _Permanent(f"HTTP {status}: {detail}") from err
        except TimeoutError as err:
            raise _Retryable(f"timed out after {self.timeout:g} s") from err
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, TimeoutError):
                raise _Retryable(f"timed out after {self.timeout:g} s") from err
            raise _Retryable(f"connection failed: {reason}") from err
        except http.client.IncompleteRead as err:
            raise _Retryable(
                f"response body cut short: {len(err.partial)} bytes read, "
                f"{err.expected if err.expected is not None else 'more'} more expected"
            ) from err
        except (ConnectionError, OSError, http.client.HTTPException) as err:
            # refused, reset (also mid-body), RemoteDisconnected, a malformed status line...
            raise _Retryable(f"connection failed: {type(err).__name__}: {err}") from err
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _Retryable(f"unreadable response body ({err}): {raw[:120]!r}") from err
        if not isinstance(payload, dict):
            raise _Retryable(f"response is not a JSON object: {raw[:120]!r}")
        return payload

    def _complete(
        self, messages: list[dict[str, Any]], params: GenerationParams
    ) -> GenerationResult:
        body = self.request_body(messages, params)
        delay = self.backoff
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self._attempts += 1
            try:
                return _parse_completion(self._post(body))
            except _Permanent as err:
                return GenerationResult.failure(str(err))
            except _Retryable as err:
                last = str(err)
                if attempt == self.max_retries:
                    break
                wait = min(delay * (1.0 + 0.25 * random.random()), self.max_backoff)
                if err.retry_after is not None:
                    wait = max(wait, min(err.retry_after, self.max_backoff))
                logger.debug("attempt %d failed (%s); retrying in %.2f s", attempt + 1, last, wait)
                time.sleep(wait)
                delay *= 2
        return GenerationResult.failure(f"failed after {self.max_retries + 1} attempts: {last}")

    def _generate(self, call: GenerationCall) -> list[GenerationResult]:
        conversations, params, on_result = call
        results: list[GenerationResult | None] = [None] * len(conversations)
        bar = self._progress_bar(
            len(conversations), f"requests ({self.model})", 2 * self.concurrency
        )
        workers = min(self.concurrency, max(1, len(conversations)))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hf-mig-http") as pool:
                futures = {
                    pool.submit(self._complete, messages, params): i
                    for i, messages in enumerate(conversations)
                }
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        result = future.result()
                    except Exception as err:  # a bug in parsing: keep it on the row
                        result = GenerationResult.failure(f"{type(err).__name__}: {err}")
                    results[i] = result
                    on_result(i, result)
                    bar.update(1)
        finally:
            bar.close()
        return finished(results)


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    value = err.headers.get("Retry-After") if err.headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_detail(err: urllib.error.HTTPError) -> str:
    try:
        raw = err.read()[:2000]
    except Exception:
        raw = b""
    text = raw.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
        if isinstance(payload, dict):
            inner = payload.get("error", payload)
            if isinstance(inner, dict) and "message" in inner:
                return str(inner["message"])[:300]
            return json.dumps(inner)[:300]
    except json.JSONDecodeError:
        pass
    return text[:300] or str(err.reason)


def _parse_completion(payload: dict[str, Any]) -> GenerationResult:
    """Turn a chat.completion JSON object into a result; raise ``_Retryable`` when it is not one
    (no ``choices``, no message, ``content`` missing, ``null`` or not a string; an empty string
    is a valid, empty completion) and ``_Permanent`` for a server error object or a refusal."""
    if "error" in payload and "choices" not in payload:
        error = payload["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise _Permanent(f"server error: {message}")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Retryable(f"response has no choices: {json.dumps(payload)[:160]}")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _Retryable(f"choice has no message: {json.dumps(choice)[:160]}")
    text = message.get("content")
    if text is None:
        refusal = message.get("refusal")
        if refusal:
            raise _Permanent(f"the model refused: {str(refusal)[:200]}")
        what = "tool calls and no text" if message.get("tool_calls") else "no content"
        raise _Retryable(f"the reply has {what}: {json.dumps(message)[:160]}")
    if not isinstance(text, str):
        raise _Retryable(f"message content is not a string: {json.dumps(message)[:160]}")
    logprobs = None
    raw_logprobs = choice.get("logprobs")
    if isinstance(raw_logprobs, dict) and isinstance(raw_logprobs.get("content"), list):
        logprobs = []
        for item in raw_logprobs["content"]:
            top = tuple(
                (str(alt.get("token", "")), float(alt.get("logprob", float("-inf"))))
                for alt in item.get("top_logprobs") or ()
                if isinstance(alt, dict)
            )
            logprobs.append(
                TokenLogprob(str(item.get("token", "")), float(item.get("logprob", 0.0)), top)
            )
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    return GenerationResult(
        text=text,
        finish_reason=choice.get("finish_reason"),
        logprobs=logprobs,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
    )
