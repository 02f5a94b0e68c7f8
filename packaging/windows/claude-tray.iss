; Inno Setup 6 script: claude-tray's Windows installer, from PyInstaller's one folder.
;
;   pyinstaller --noconfirm --distpath dist packaging\claude-tray.spec
;   iscc /DAppVersion=0.1.0 packaging\windows\claude-tray.iss   ; -> dist\claude-tray-0.1.0-windows-x64-setup.exe
;
; Per-user install by default (no admin prompt; {autopf} is then %LOCALAPPDATA%\Programs),
; a Start-menu entry, an optional "Start at login" (the same HKCU Run value the tray's
; Settings > Start at login writes, so either can turn it off), and an uninstaller that
; removes the program and that value but keeps the user's settings, sessions and logs
; (%LOCALAPPDATA%\claude-tray) and the API key in Credential Manager.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#define SourceDir "..\..\dist\claude-tray"

[Setup]
AppId={{6F1C2B7E-3C1D-4E8A-9A57-2F4B9C0D7E11}
AppName=claude-tray
AppVersion={#AppVersion}
AppPublisher=claude-tray developers
AppPublisherURL=https://github.com/claude-tray/claude-tray
DefaultDirName={autopf}\claude-tray
DefaultGroupName=claude-tray
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=claude-tray-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\assets\icons\claude-tray.ico
UninstallDisplayIcon={app}\claude-tray.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; A running claude-tray holds its files open: ask it to close first.
CloseApplications=yes

[Tasks]
Name: "autostart"; Description: "Start claude-tray when I sign in to Windows"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\claude-tray"; Filename: "{app}\claude-tray.exe"; Comment: "Use your Claude sign-in from any coding tool"
Name: "{group}\Uninstall claude-tray"; Filename: "{uninstallexe}"

[Registry]
; Exactly what tray_app.integrations.autostart writes: value "claude-tray" under HKCU Run.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; \
  ValueName: "claude-tray"; ValueData: """{app}\claude-tray.exe"""; Tasks: autostart; \
  Flags: uninsdeletevalue
; Also removed on uninstall when the tray app (not the installer) turned it on.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: none; \
  ValueName: "claude-tray"; Flags: dontcreatekey uninsdeletevalue

[Run]
Filename: "{app}\claude-tray.exe"; Description: "Start claude-tray now"; \
  Flags: nowait postinstall skipifsilent

[UninstallRun]
; Quit a running claude-tray so its files can be removed.
Filename: "{sys}\taskkill.exe"; Parameters: "/IM claude-tray.exe /F"; Flags: runhidden; RunOnceId: "StopClaudeTray"
