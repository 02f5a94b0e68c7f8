"""The tray: a pure Status -> menu function, the commands it offers, and the pystray icon.

Only `tray/icon.py` and `tray/icons.py` touch pystray and PIL, and pystray is imported only
when the icon starts (importing it without a display crashes).
"""
