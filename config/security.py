"""The Content-Security-Policy (django-csp): settings hold the site's policy, and this adds the one
exception a page of ours needs."""

from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware, PolicyParts


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if is_email_preview(request):
            # The preview shows the email's HTML in a sandboxed srcdoc frame, which inherits this
            # policy; email HTML is styled inline (mail clients drop style sheets). Styles only:
            # the frame runs no script, and no page allows inline script without its nonce.
            parts.update = {**(parts.update or {}), "style-src": [UNSAFE_INLINE]}
        return parts


def is_email_preview(request) -> bool:
    """The admin's "Preview & test" pages (notifications/admin.py: PreviewAdminMixin)."""
    match = getattr(request, "resolver_match", None)
    return bool(match and match.namespace == "admin" and match.url_name.endswith("_preview"))
