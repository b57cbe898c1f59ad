"""The people behind the demo traffic's consents: they get the double opt-in mail, and most confirm.

Without them `leadpipe dev` would mail confirmation requests that nobody follows, and nurture would
never send its sequences. They click the very link nurture's mailer put in the mail (`confirm_link`,
from the consent request on `nurture.outbox`), open capture's page and press its button, as a
person does: some within seconds of filling in the form, some never.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from schemas.nurture import NurtureCommand
from schemas.topics import TopicName
from services.nurture.links import confirm_link
from services.nurture.settings import NurtureSettings


@dataclass
class DemoPeople:
    settings: NurtureSettings  # the nurture worker's: its confirmation links and their key
    confirm_share: float = 0.7  # most people confirm a subscription they just asked for
    random: random.Random = field(default_factory=lambda: random.Random(7))
    requests: asyncio.Queue[NurtureCommand] = field(default_factory=asyncio.Queue)
    confirmed: int = 0

    def offer(self, topic: str, value: bytes | None) -> None:
        """A record the stack's follower read: the consent requests are the mails these people get."""
        if value and topic == TopicName.NURTURE_OUTBOX and b'"consent_request"' in value:
            command = NurtureCommand.model_validate_json(value)
            if command.purpose == "consent_request":
                self.requests.put_nowait(command)

    async def confirm(self, session: aiohttp.ClientSession, command: NurtureCommand) -> bool:
        """Follow the mail's link and press the page's button; True when capture took it."""
        link = URL(confirm_link(self.settings, command))
        html = {"Accept": "text/html"}
        async with session.get(link, headers=html) as page:
            if page.status != 200:
                return False
        async with session.post(link.with_query(None), data={"token": link.query["token"]}) as answer:
            return answer.status == 200

    async def run(self) -> None:
        """Until cancelled: each request read, some people confirm a few seconds later."""
        async with aiohttp.ClientSession() as session:
            while True:
                command = await self.requests.get()
                if self.random.random() >= self.confirm_share:
                    continue
                await asyncio.sleep(self.random.uniform(1.0, 5.0))
                try:
                    if await self.confirm(session, command):
                        self.confirmed += 1
                except aiohttp.ClientError:
                    continue  # the stack is stopping, or capture is restarting: that person gave up
