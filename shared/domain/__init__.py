"""The domain: upload states and transitions, the record, messages, sequence collections, access
rules, event normalisation, the stages, and the ports (``typing.Protocol``) through which handlers
and use cases reach the servers. No I/O; imports nothing but itself, the engine and the settings.
"""
