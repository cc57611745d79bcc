"""The examples from Akool's image-generation docs (shared/akool-api/image-generate.md), as dicts.

Copied field for field; the docs' ``//`` comments are dropped because JSON has none. Every test
that needs "what Akool really sends" starts from here, so a change in the docs is one edit.
Treat these as read-only: take a ``copy.deepcopy`` before changing one.
"""

from __future__ import annotations

from typing import Any, Final

CREATE_BY_PROMPT_PATH: Final = "/api/open/v3/content/image/createbyprompt"
CREATE_BY_BUTTON_PATH: Final = "/api/open/v3/content/image/createbybutton"
IMAGE_INFO_PATH: Final = "/api/open/v3/content/image/infobymodelid"
CREDIT_PATH: Final = "/api/open/v3/faceswap/quota/info"
TOKEN_PATH: Final = "/api/open/v3/getToken"

# -- request bodies ------------------------------------------------------------------------------

CREATE_BY_PROMPT_REQUEST: Final[dict[str, Any]] = {
    "prompt": "Sun Wukong is surrounded by heavenly soldiers and generals",
    "scale": "1:1",
    "source_image": (
        "https://drz0f01yeq1cx.cloudfront.net/"
        "1708333063911-9cbe39b7-3c5f-4a35-894c-359a6cbb76c3-3283.png"
    ),
    "webhookUrl": "",
}

CREATE_BY_BUTTON_REQUEST: Final[dict[str, Any]] = {
    "_id": "65d3206b83ccf5ab7d46cdc6",
    "button": "U2",
    "webhookUrl": "",
}

# The docs' infobymodelid example query: GET ...?image_model_id=662a10df4197b3af58532e89
IMAGE_INFO_QUERY: Final[dict[str, str]] = {"image_model_id": "662a10df4197b3af58532e89"}

# -- responses (whole envelopes) -----------------------------------------------------------------

# The createbyprompt example response, from the docs' page (prompt texts elided there too).
CREATE_BY_PROMPT_RESPONSE: Final[dict[str, Any]] = {
    "code": 1000,
    "msg": "OK",
    "data": {
        "faceswap_quality": 2,
        "deduction_credit": 2,
        "buttons": [],
        "used_buttons": [],
        "upscaled_urls": [],
        "_id": "64dd82eef0b6684651e90131",
        "uid": 378337,
        "create_time": 1692238574633,
        "origin_prompt": "***",
        "source_image": (
            "https://***.cloudfront.net/1702436829534-4a813e6c-303e-48c7-8a4e-b915ae408b78-5034.png"
        ),
        "prompt": "***** was a revolutionary leader who transformed *** into a powerful state.",
        "type": 4,
        "from": 1,
        "image_status": 1,
    },
}

CREATE_BY_BUTTON_RESPONSE: Final[dict[str, Any]] = {
    "code": 1000,
    "msg": "OK",
    "data": {
        "faceswap_quality": 2,
        "deduction_credit": 2,
        "buttons": [],
        "used_buttons": [],
        "upscaled_urls": [],
        "_id": "6508292f16e5ba407d47d21b",
        "image_content_model_id": "6508288416e5ba407d47d13f",
        "create_time": 1695033647012,
        "op_button": "U2",
        "op_buttonMessageId": "kwZsk6elltno5Nt37VLj",
        "image_status": 1,
        "from": 1,
    },
}

INFO_BY_MODEL_ID_RESPONSE: Final[dict[str, Any]] = {
    "code": 1000,
    "msg": "OK",
    "data": {
        "faceswap_quality": 2,
        "deduction_credit": 2,
        "buttons": ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"],
        "used_buttons": [],
        "upscaled_urls": [],
        "_id": "662a10df4197b3af58532e89",
        "create_time": 1714032863272,
        "uid": 378337,
        "type": 3,
        "image_status": 3,
        "image": (
            "https://***.cloudfront.net/1714032892336-e0ec9305-e217-4b79-8704-e595a822c12b-8013.png"
        ),
    },
}

CREDIT_RESPONSE: Final[dict[str, Any]] = {"code": 1000, "msg": "OK", "data": {"credit": 123}}

TOKEN_RESPONSE: Final[dict[str, Any]] = {"code": 1000, "token": "eyJhbGciOiJIUzI1NiJ9.sample.token"}

# Business codes from the docs' table (verified) and from FACTS.md (unverified), with the
# message Akool gives (or a plausible one where only the meaning is known).
DOCUMENTED_CODES: Final[dict[int, str]] = {
    1003: "Parameter error or Parameter can not be empty",
    1008: "The content you get does not exist",
    1009: "You do not have permission to operate",
    1010: "You can not operate this content",
    1101: "Invalid authorization or The request token has expired",
    1102: "Authorization cannot be empty",
    1108: "image generate error,please try again later",
    1200: "The account has been banned",
}
UNVERIFIED_CODES: Final[dict[int, str]] = {
    1005: "Operation is too frequent",
    1006: "Insufficient credit",
    1104: "Insufficient credit",
    1103: "Not paid",
    1213: "Subscription required",
    1221: "Subscription required",
    1109: "Account not found",
}
