"""The answer to a share or an added member that became a pending invite (202)."""

from __future__ import annotations

from sanic.response import HTTPResponse, json

from models.invites import InvitedOut, invite_out
from service.invites import Invited
from service.stored import one

INVITED = {"202": ("the address is not a verified account: a pending invite, access once it is verified", InvitedOut)}


def invited(result: Invited) -> HTTPResponse:
    return json({"invite": one("invites", result.invite, invite_out)}, status=202)
