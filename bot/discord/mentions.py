"""What the bot's messages may ping: nobody. Prompts and names are members' text."""

from __future__ import annotations

import discord

NO_MENTIONS = discord.AllowedMentions.none()
