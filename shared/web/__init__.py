"""The HTTP edge shared by the intake and refget: the API key checked before any body is read,
failed-key limits, response headers, body limits, and serving without trusting forwarded headers."""
