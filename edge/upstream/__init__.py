"""Talking to providers: pooled HTTP/1.1 connections over asyncio protocols."""
