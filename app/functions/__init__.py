"""The Cloud Functions (gen2, CloudEvent) of the closed loop: Simulator, Logger and Trigger.

The same functions run under functions-framework locally and in Cloud Functions; the
deployed source's main.py (see infra) imports them from here.
"""
