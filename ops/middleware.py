from django.urls import Resolver404, resolve


class ProbeMiddleware:
    """Answers the probes (ops/urls.py) ahead of the middleware that checks the Host header:
    Docker and load balancers call them by address, where ALLOWED_HOSTS rightly refuses the
    site's own pages. The middleware above it in settings adds the site's security headers to
    their answers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            # "/healthz" and "/healthz/" alike, as load balancers are configured either way.
            match = resolve(request.path_info.rstrip("/"), urlconf="ops.urls")
        except Resolver404:
            return self.get_response(request)
        return match.func(request, *match.args, **match.kwargs)
