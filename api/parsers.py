"""The API reads JSON, and no more of it than API_MAX_BODY_BYTES. Kept apart from
api.problems: DRF imports its parsers while its own views module loads."""

import io

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class LimitedJSONParser(JSONParser):
    """JSON, read no further than API_MAX_BODY_BYTES (DRF reads the stream past Django's own
    DATA_UPLOAD_MAX_MEMORY_SIZE check)."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = int(request.META.get("CONTENT_LENGTH") or 0) if request else 0
        body = stream.read(limit + 1) if stream is not None else b""
        if declared > limit or len(body) > limit:
            raise BodyTooLarge(f"The body is larger than {limit} bytes.")
        return super().parse(io.BytesIO(body), media_type, parser_context)
