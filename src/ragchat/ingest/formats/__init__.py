"""One reader per file format, each through its own library; ``ragchat.ingest.loaders`` picks one.

- ``pdf``         PDF: the text layer (pypdf), OCR for pages that need it, garbage text layers
- ``pdf_tables``  ruled tables of PDF pages as Markdown tables (pdfplumber), on request
- ``office``      Word (.docx), PowerPoint (.pptx) and Excel (.xlsx)
- ``epub``        EPUB books, one page per chapter
- ``mail``        e-mail messages (.eml)
- ``html``        HTML pages; also the reader of EPUB chapters and HTML e-mail bodies
- ``csv``         CSV and TSV files
- ``image``       PNG, JPEG, TIFF and WebP, with OCR
- ``table``       ``markdown_table``: how every reader writes a table

Plain text and Markdown need no reader of their own (``ragchat.ingest.decode``). Left out: type
detection (``ragchat.ingest.detect``) and the limits against hostile files (``ragchat.ingest.isolation``).
"""
