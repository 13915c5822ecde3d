"""The web studio: the API behind the page (runtime/web/api), the page (runtime/web/static), `make web-local`."""
