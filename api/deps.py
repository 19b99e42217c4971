"""Dependencies of the REST routes: the services built in the lifespan, as typed aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.container import Services


async def get_services(request: Request) -> Services:
    """The app's services (built in the lifespan)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
